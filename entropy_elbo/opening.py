"""Open what the user holds for measuring and judge it on the data: the one place a checkpoint is let through.

`open_checkpoint` takes a checkpoint file, a run folder that `train --out` wrote, a diffusers pipeline folder or a
live `nn.Module`, and data as a path or named set, an array or tensor of rows, or an iterable of batches. It scores
the readings the weights leave open on a few hundred rows spread over the data, and raises the one-line refusals
(a Bernoulli decoder, readings tied, a fixed variance without a value, rows that are not the model's D).
`estimate`, `collapse`, `compare`, `inspect` (measure.py), the `Monitor` and every command of the CLI go through it,
so a notebook, a training loop and the command line get the same answer (or the same refusal) for a checkpoint.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from entropy_elbo.batching import resolve_batch_size
from entropy_elbo.checkpoints import LoadedModel, LoadOptions, load_model, wrap_module
from entropy_elbo.checkpoints.introspect import Introspection
from entropy_elbo.checkpoints.readings import spread_rows
from entropy_elbo.data import iter_batches, load_image_folder, resolve_data
from entropy_elbo.data.preprocess import as_trained
from entropy_elbo.encoder_check import check_encoder, guessed_param
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models.protocol import GaussianVAE
from entropy_elbo.splits import rows_of
from entropy_elbo.threads import model_work, use_threads

Rows = np.ndarray | Tensor
Progress = Callable[[int, str], AbstractContextManager[Callable[[int], None] | None]]


def no_progress(total: int, unit: str) -> AbstractContextManager[None]:
    """The default progress: none (the CLI passes a bar or periodic lines)."""
    return nullcontext()


@dataclass
class Opened:
    """A model opened for measuring, how it was read, and the data it is measured on (rows as trained)."""

    model: GaussianVAE
    source: str  # what was opened, as messages name it
    introspection: Introspection | None  # None for our own models and live ones of ours: nothing was guessed
    metadata: dict[str, object]
    data_name: str  # the data as messages name it (the path, or "data")
    x: np.ndarray | None  # the rows (N, ...), memory-mapped for a .npy; None when data came as batches
    first: Tensor | None = None  # batches given: the first one (already read), then `rest`
    rest: Iterator[Rows] | None = None
    again: Iterable[Rows] | None = None  # batches given as a collection (a list): read again from here
    batch_size: int = 0  # rows per evaluation step
    notes: list[str] = field(default_factory=list)  # what was done to the data (preprocessing as in training)
    row_set: str = "all"  # which of a run's rows: "train", "holdout" or "all" (entropy_elbo.splits)

    @property
    def wild(self) -> bool:
        """Read from a checkpoint we did not write: how it was read is worth saying."""
        return self.introspection is not None and self.introspection.fmt != "entropy-elbo"

    @property
    def d(self) -> int:
        """Values per data row."""
        row = self.x[0] if self.x is not None else self.first[0]
        return int(np.prod(row.shape))

    def batches(self) -> Iterator[Rows]:
        """The data in steps of `batch_size` rows (given batches: as given, once)."""
        if self.x is not None:
            return iter_batches(self.x, self.batch_size, source=self.data_name)
        if self.first is not None:
            first, self.first = self.first, None
            return itertools.chain([first], self.rest)
        if self.again is None:
            raise EntropyElboError("data: a generator of batches can be read only once, and this needs two passes; "
                                   "pass a list of batches or an array of rows")
        return (as_tensor(b) for b in self.again)

    def rows_count(self) -> int | None:
        """N, when the data came as rows (batches: unknown until read)."""
        return None if self.x is None else len(self.x)


# ---------------------------------------------------------------------------------------------- what the user holds


def load_options(options: LoadOptions | None, flags: dict[str, object]) -> LoadOptions:
    """The checkpoint flags as one LoadOptions: an object, or keywords named like the CLI flags (not both)."""
    known = {f.name for f in fields(LoadOptions)} - {"rows", "input_shape"}
    unknown = sorted(set(flags) - known)
    if unknown:
        raise EntropyElboError(f"{', '.join(unknown)}: not an option; the checkpoint options are "
                               f"{', '.join(sorted(known))}")
    if options is not None and flags:
        raise EntropyElboError(f"options and {', '.join(sorted(flags))}: pass a LoadOptions or keywords, not both")
    return options if options is not None else LoadOptions(**flags)


def checkpoint_path(source: str | Path) -> tuple[Path, str | None]:
    """The checkpoint file that `source` names, with a note when a folder was followed to it: a run folder that
    `train --out` wrote (its model.safetensors) or a diffusers pipeline folder (its vae/)."""
    from entropy_elbo.runs import SETTINGS, run_for_resume

    path = Path(source)
    if path.is_dir() and (path / SETTINGS).is_file():
        return run_for_resume(path).checkpoint, None
    if path.is_dir() and (path / "model_index.json").is_file() and (path / "vae").is_dir():
        return path / "vae", f"note: {path} is a diffusers pipeline folder; reading its autoencoder {path / 'vae'}"
    return path, None


def data_rows(data: object, key: str | None) -> tuple[np.ndarray | None, Tensor | None, Iterator[Rows] | None, str]:
    """Data as the user holds it -> (rows, or the first batch and the rest, and its name in messages)."""
    if isinstance(data, (str, Path)):
        x, _ = resolve_data(str(data), key=key)
        return x, None, None, str(data)
    if key is not None:
        raise EntropyElboError("key (--key): names an array inside a .npz file; drop it for data given as arrays")
    if isinstance(data, (np.ndarray, Tensor)):
        return as_array(data), None, None, "data"
    if isinstance(data, Iterable):
        it = iter(data)
        first = next(it, None)
        if first is None:
            raise EntropyElboError("data: no rows to estimate over; pass a file with at least one data point")
        return None, as_tensor(first), (as_tensor(b) for b in it), "data"
    raise EntropyElboError(f"data: got {type(data).__name__}; pass a file path, a named set, an array or tensor of "
                           "rows (N, ...), or an iterable of such batches")


ROWS = "rows (N, ...) with N >= 1 (one row: x[None])"


def check_rows(rows: object, wanted: str = ROWS) -> None:
    """Rows (N, ...) with N >= 1 of a floating-point dtype, as a numpy array or a tensor; else a one-line error that
    says what was got and asks for `wanted` (the Monitor adds that an (x, y) batch passes x)."""
    if not isinstance(rows, (np.ndarray, Tensor)) or rows.ndim < 2 or rows.shape[0] == 0:
        got = f"shape {tuple(rows.shape)}" if isinstance(rows, (np.ndarray, Tensor)) else type(rows).__name__
        raise EntropyElboError(f"data: got {got}; pass {wanted}")
    floating = rows.is_floating_point() if isinstance(rows, Tensor) else np.issubdtype(rows.dtype, np.floating)
    if not floating:
        raise EntropyElboError(f"data: dtype {str(rows.dtype).replace('torch.', '')}; pass floating-point rows")


def as_array(rows: Rows) -> np.ndarray:
    """Rows (N, ...) as a numpy array (a tensor is copied to the CPU once), checked for shape and dtype."""
    check_rows(rows)
    return rows.detach().cpu().numpy() if isinstance(rows, Tensor) else rows


def as_tensor(batch: Rows) -> Tensor:
    """One batch (B, ...) as a float32 tensor."""
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], (np.ndarray, Tensor)):
        raise EntropyElboError("data: a batch is a tuple (for example (x, y)); pass batches of the inputs alone")
    if not isinstance(batch, (np.ndarray, Tensor)):
        raise EntropyElboError(f"data: a batch is a {type(batch).__name__}; pass arrays or tensors of rows (B, ...)")
    return torch.as_tensor(as_array(batch), dtype=torch.float32)


def scored_on(options: LoadOptions, rows: Rows) -> LoadOptions:
    """A copy of `options` that scores the readings on a few hundred of `rows` and probes with their shape (the
    caller's LoadOptions stays as it was)."""
    return replace(options, input_shape=tuple(rows.shape[1:]), rows=score_rows(rows))


def score_rows(x: Rows) -> Tensor:
    """A few hundred rows spread evenly over the data (a copy, so a read-only memmap is fine), to score a
    checkpoint's readings: the first rows of a file sorted by class or time would mislead."""
    if isinstance(x, Tensor):
        return x[torch.as_tensor(spread_rows(len(x)), device=x.device)].to(torch.float32)
    with np.errstate(over="ignore"):  # a value past float32's range becomes inf, which the row check then names
        return torch.from_numpy(np.array(x[spread_rows(len(x))], dtype=np.float32))


# ---------------------------------------------------------------------------------------------- opening and judging


def open_checkpoint(source: str | Path | nn.Module, data: object = None, *, key: str | None = None,
                    device: torch.device | str = "cpu", batch_size: int | None = None, samples: int = 0,
                    needs: str = "likelihood", preprocess: str = "auto", threads: int | None = None,
                    rows: str | None = None, options: LoadOptions | None = None, **flags: object) -> Opened:
    """Open `source` for measuring on `data`, score the readings its weights leave open on the data's rows, and
    refuse what cannot be measured honestly (`needs`: "likelihood" for an ELBO, "encoder" for collapse alone).

    `rows`: "train", "holdout" or "all" of a run's data (None: the rows it held out when it recorded a split;
    `entropy_elbo.splits`). `flags` are the checkpoint options, named like the CLI's (decoder_variance=, ...).
    """
    opts = load_options(options, flags)
    dev = torch.device(device)
    x, first, rest, name = data_rows(data, key) if data is not None else (None, None, None, "data")
    sample = x if x is not None else first
    if sample is not None:  # a copy: the caller's LoadOptions stays as it was
        opts = scored_on(opts, sample)
    loaded, notes = open_model(source, dev, opts, sample)
    again = data if first is not None and iter(data) is not data else None  # a list: readable again
    opened = Opened(loaded.model, loaded.source, loaded.introspection, loaded.metadata, name, x, first, rest, again,
                    notes=notes)
    if x is not None:
        opened.x = as_trained_rows(opened, str(data) if isinstance(data, (str, Path)) else None, preprocess)
    if x is not None or rows not in (None, "all"):
        opened.x = chosen_rows(opened, rows)
    if sample is not None:
        judge(opened, needs)
        if opened.wild and needs in ("likelihood", "encoder") and guessed_param(opened.introspection, opts):
            check_encoder(opened.model, opts.rows, opened.introspection, opts, dev)  # a_h refutes a guessed tau^2
        opened.batch_size = resolve_batch_size(batch_size, opened.model, opened.d, samples, dev)
        if dev.type == "cpu":  # a step never holds more rows than the data
            n = opened.rows_count() or len(first)
            use_threads(model_work(opened.model, min(opened.batch_size, n), samples), threads)
    return opened


def chosen_rows(opened: Opened, rows: str | None) -> np.ndarray:
    """The rows of a run's data that `rows` picks (splits.rows_of), in memory when a split applies, with a note."""
    if opened.x is None:
        raise EntropyElboError(f"--rows {rows}: picks rows of data given as rows (a file or an array), not batches; "
                               "pass the rows, or --rows all")
    idx, opened.row_set, note = rows_of(len(opened.x), opened.metadata, rows, opened.data_name)
    if note:
        opened.notes.append(note)
    return opened.x if idx is None else np.asarray(opened.x[idx])


def open_module(module: nn.Module, rows: Tensor, *, options: LoadOptions | None = None,
                needs: str = "any") -> Opened:
    """A live module read and judged on `rows` (the Monitor's fixed batch) as `open_checkpoint` reads a checkpoint,
    without choosing threads or a batch size: the training loop owns those. The caller keeps its train/eval flags
    and RNG state (monitor.untouched)."""
    opts = scored_on(options or LoadOptions(), rows)
    loaded, _ = open_model(module, rows.device, opts, rows)
    opened = Opened(loaded.model, loaded.source, loaded.introspection, loaded.metadata, "data", None, rows[:1])
    judge(opened, needs)
    return opened


def open_model(source: str | Path | nn.Module, dev: torch.device, opts: LoadOptions,
               rows: Rows | None) -> tuple[LoadedModel, list[str]]:
    """The model in `source` (a path or a live module) and the notes on how a folder was followed."""
    if isinstance(source, nn.Module):
        if rows is None:
            raise EntropyElboError(f"data: a live {type(source).__name__} is read by running it; pass data rows")
        example = (rows if isinstance(rows, Tensor) else score_rows(rows))[:2].to(dev)
        model, intro = wrap_module(source, example, opts)
        return LoadedModel(model, f"live {type(source).__name__}", {"introspection": intro} if intro else {}), []
    if not isinstance(source, (str, Path)):
        raise EntropyElboError(f"source: got {type(source).__name__}; pass a checkpoint path, a run folder or an "
                               "nn.Module")
    path, note = checkpoint_path(source)
    return load_model(path, device=dev, options=opts), [note] if note else []


def as_trained_rows(opened: Opened, spec: str | None, preprocess: str) -> np.ndarray:
    """The data read again as its checkpoint was trained: an image folder at the recorded size and crop, a table
    with its recorded column drop and scaler (per `preprocess`); a note says which was done."""
    x, recorded = opened.x, opened.metadata.get("data")
    if spec is None or not isinstance(recorded, dict):
        return x
    images = recorded.get("images") if Path(spec).is_dir() else None
    if isinstance(images, dict) and (images.get("image_size"), images.get("crop")) != (x.shape[-1], None):
        return load_image_folder(spec, int(images["image_size"]), images.get("crop"))
    rec = recorded.get("preprocessing")
    if not isinstance(rec, dict) or Path(spec).is_dir():
        return x
    x, note = as_trained(x, rec, spec, preprocess)
    opened.notes.append(note)
    return x


def judge(opened: Opened, needs: str) -> None:
    """Refuse what cannot be measured: readings the data leave tied, rows of another size than the model's D, and
    for an ELBO (`needs` "likelihood") a decoder outside the Gaussian form or a fixed variance nobody gave; "any"
    (the Monitor) judges the likelihood only where a decoder variance is known, so an ELBO will be computed."""
    intro, name = opened.introspection, opened.data_name
    if needs == "any":
        needs = "encoder" if intro is not None and not variance_known(intro) else "likelihood"
    want = getattr(getattr(opened.model, "config", None), "data_dim", None)
    if want is not None and opened.d != want:
        raise EntropyElboError(f"{name}: rows have {opened.d} values but the model expects {want}; pass matching "
                               "data")
    if intro is None:
        return
    likelihood = needs == "likelihood"
    if intro.unresolved and not (likelihood and intro.refusal):
        raise EntropyElboError(f"{intro.source}: {intro.unresolved}")
    if intro.d is not None and opened.d != intro.d:  # collapse too: its encoder takes the same D values
        raise EntropyElboError(f"{name}: rows have {opened.d} values but the checkpoint's model takes {intro.d}; "
                               "pass matching data")
    if not likelihood or intro.fmt == "entropy-elbo":
        return
    if intro.refusal:
        raise EntropyElboError(f"{intro.source}: {intro.refusal}; `collapse` still applies (it needs only the "
                               "encoder)")
    if not variance_known(intro):
        value = "VALUE" if intro.decoder.implied is None else f"{intro.decoder.implied:g} (what its loss implies)"
        raise EntropyElboError(f"{intro.source}: its decoder variance was never learned ({intro.decoder.evidence}); "
                               f"pass --decoder-variance {value} for the Monte Carlo ELBO at that sigma^2, or "
                               "--decoder-variance optimal for the ELBO at the best sigma^2 given the rest")


def variance_known(intro: Introspection) -> bool:
    """Whether the decoder variance is learned or given: without it no Monte Carlo ELBO is honest."""
    return not (intro.decoder.kind == "fixed" and intro.decoder.value is None)
