"""Start or resume a training run the same way from the CLI and from Python: settings, checks, data, model.

The settings are one `RunSettings` (entropy_elbo.run_settings: the model's defaults < the preset < run.json on
resume < the settings given); a resumed run keeps its run.json's settings (only `epochs` may grow) and its model.
Messages go to a `notify` callable (stderr by default; the CLI passes its own): nothing here draws on a terminal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from entropy_elbo import distributed
from entropy_elbo.atomic import check_writable
from entropy_elbo.data import iter_batches
from entropy_elbo.devices import resolve_device
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models import MODELS, ModelConfig, build_model, check_model_size, check_step_size
from entropy_elbo.presets import preset
from entropy_elbo.progress import message
from entropy_elbo.run_checks import check_log
from entropy_elbo.run_settings import RUN_KEYS, SETTINGS, RunSettings
from entropy_elbo.runs import (
    RunFolder,
    data_changes,
    fingerprint,
    read_settings,
    run_for_out,
    run_for_resume,
    state_epoch,
    write_settings,
)
from entropy_elbo.train import TrainingData, prepare_data, train

Notify = Callable[[str], None]


@dataclass(frozen=True)
class RunResult:
    """A finished run: where it lives, its settings, and one log row per epoch (nats per data point)."""

    run: RunFolder
    run_settings: RunSettings
    history: list[dict[str, object]]
    main_process: bool = True  # False in the processes other than 0 under torchrun (they neither write nor report)

    @property
    def settings(self) -> dict[str, object]:
        """The settings as the run's run.json holds them."""
        return self.run_settings.stored()


@dataclass(frozen=True)
class OpenRun:
    """A run about to train: its folder, its settings, and the run.json it carries on (None: a new run)."""

    run: RunFolder
    settings: RunSettings
    stored: dict[str, object] | None = None


@dataclass(frozen=True)
class Rows:
    """The rows a run trains on (flat for the MLP models), its held-out rows, and where they came from."""

    x: np.ndarray
    held: np.ndarray | None
    prepared: TrainingData


def train_run(model: str | None = None, *, out: str | Path | None = None, resume: str | Path | None = None,
              device: str | torch.device = "auto", progress: bool | None = None, threads: int | None = None,
              notify: Notify | None = None, **settings: object) -> RunResult:
    """Train MODEL into the run folder `out`, or carry on the run at `resume` (MODEL optional: it is stored).

    `settings` are the `train` command's options by their Python names (data, latents, epochs, lr, preset, ...);
    `progress` None shows a progress bar when stderr is a terminal; `threads` None lets
    `entropy_elbo.threads.choose_threads` pick torch's CPU threads from the work's size; `notify` receives the
    messages for the user (default: printed on stderr). Under torchrun every process trains on its own block of
    rows and process 0 alone writes.
    """
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise EntropyElboError(f"train_run: unknown setting {unknown[0]!r}; use {', '.join(SETTINGS)}")
    given = {k: v for k, v in settings.items() if v is not None}
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    ranks = distributed.context_from_env()  # under torchrun: DDP over blocks of rows, rank 0 alone writes
    if ranks is not None and ranks.world_size > 1:
        if resume is not None:
            raise EntropyElboError("--resume under torchrun is not supported; resume the run in one process")
        dev = distributed.setup(ranks, dev)
    else:
        ranks = None
    releases: list = []  # the run folder's lock, released when the run ends (the kernel does if it dies)
    notify = notify or message
    try:
        opened = open_new(out, model, given) if resume is None else open_resumed(resume, out, model, given, notify,
                                                                                 releases)
        rows = load_rows(opened.settings)
        config = checked_model(opened, rows.x, resume)
        meta = data_metadata(opened.settings, rows, ranks, notify)
        history = run_training(opened, config, rows, meta, dev, ranks, progress, threads, releases)
        return RunResult(opened.run, opened.settings, history, ranks is None or ranks.is_main)
    finally:
        for release in releases:
            release()
        if ranks is not None:
            distributed.teardown()


def open_new(out: str | Path | None, model: str | None, given: dict[str, object]) -> OpenRun:
    """A new run's folder, checked to replace nothing, and its settings."""
    if out is None:
        raise EntropyElboError("train: pass --out RUN_FOLDER or --out CHECKPOINT.safetensors")
    model = model_for(model, given.get("preset"))
    run = run_for_out(out)
    if run.settings.exists():
        read_settings(run.folder)  # an empty run.json (a run stopped before it started) says so
        raise EntropyElboError(f"--out {out}: {run.folder} already holds a run; --resume {out} continues it, "
                               "or remove it or choose another --out")
    run.check_fresh(Path(out))
    check_writable(run.checkpoint if run.checkpoint.parent.is_dir() else run.folder)
    return OpenRun(run, RunSettings.new(model, given))


def open_resumed(resume: str | Path, out: str | Path | None, model: str | None, given: dict[str, object],
                 notify: Notify, releases: list) -> OpenRun:
    """The run at `resume`, locked for this process, with its stored settings and model; its data unchanged."""
    if out is not None:
        raise EntropyElboError("--resume continues a run where it was written; drop --out")
    run = run_for_resume(resume)
    releases.append(run.claim())  # one process at a time carries a run on
    stored = check_stored(read_settings(run.folder), run.settings)
    trained = state_epoch(run.state) if run.state.exists() else 0  # no state: stopped before its first epoch
    check_log(run.log, trained)
    settings = RunSettings.resumed(stored, model, given, Path(resume), trained)
    check_same_data(stored, settings.data, Path(resume), notify)
    return OpenRun(run, settings, stored)


def load_rows(settings: RunSettings) -> Rows:
    """The run's rows: read, split, scaled and checked."""
    prepared = prepare_data(settings.data, key=settings.key, drop_column=settings.drop_column, scale=settings.scale,
                            holdout=settings.holdout, image_size=settings.image_size, crop=settings.crop,
                            rows=settings.rows, seed=settings.seed)
    x, held = prepared.train, prepared.heldout
    if settings.model != "conv":  # the MLP models read flat rows
        x = x.reshape(len(x), -1)
        held = None if held is None else held.reshape(len(held), -1)
    return Rows(training_data(x, settings.data, settings.latents), held, prepared)


def data_metadata(settings: RunSettings, rows: Rows, ranks: distributed.Context | None,
                  notify: Notify) -> dict[str, object]:
    """What run.json and the checkpoint record about the data; under torchrun, each process's share (said once)."""
    prepared, x, held = rows.prepared, rows.x, rows.held
    meta: dict[str, object] = {"source": prepared.source, "shape": list(x.shape), "scale": prepared.scale,
                               "heldout_rows": 0 if held is None else len(held),
                               "fingerprint": fingerprint(settings.data)}
    if Path(settings.data).is_dir():  # how estimate/collapse/compare must read the folder again
        meta["images"] = {"image_size": settings.image_size, "crop": settings.crop}
    if prepared.preprocessing is not None:  # the column drop and fitted scaler, to read the raw file again
        meta["preprocessing"] = prepared.preprocessing
    if ranks is not None:
        per_rank = distributed.rows_per_rank(len(x), ranks)
        meta.update(processes=ranks.world_size, rows_per_process=per_rank)
        if ranks.is_main:
            left = len(x) - per_rank * ranks.world_size
            notify(f"torchrun: {ranks.world_size} processes, {per_rank} training rows and batches of "
                   f"{settings.batch_size} rows each (gradients averaged over processes)"
                   + (f"; the last {left} of {len(x)} rows left out, so that all take the same steps" if left else ""))
    return meta


def checked_model(opened: OpenRun, x: np.ndarray, resume: str | Path | None) -> ModelConfig:
    """The model's config (a new run's from its settings, a resumed run's from run.json), refused before anything
    is allocated when its weights or a training step cannot fit in memory."""
    settings, shape = opened.settings, tuple(x.shape[1:])
    if opened.stored is None:
        config = settings.model_config(shape)
    else:
        config = ModelConfig.from_json(str(opened.stored["model_config"]))
        check_same_rows(opened.stored, config, x, settings.data, resume)
    check_model_size(config, copies=4, source=f"train {settings.model}")
    rows = min(settings.batch_size, len(x))
    check_step_size(config, settings.samples, rows, source=f"train {settings.model} --samples {settings.samples} "
                    f"--batch-size {settings.batch_size}")
    return config


def check_same_rows(stored: dict[str, object], config: ModelConfig, x: np.ndarray, data: str,
                    resume: str | Path) -> None:
    """A resumed run's rows must fit its model and have the shape it started on."""
    if config.data_dim != int(np.prod(x.shape[1:])):
        raise EntropyElboError(f"--resume {resume}: the data has {int(np.prod(x.shape[1:]))} values per row but "
                               f"the run's model expects {config.data_dim}; pass the run's --data")
    was = stored["data"].get("shape") if isinstance(stored.get("data"), dict) else None
    if was is not None and list(was) != list(x.shape):
        raise EntropyElboError(f"--resume {resume}: the data {data} now gives training rows of shape "
                               f"{tuple(x.shape)}, the run started on {tuple(was)}; the data changed, start a new run")


def run_training(opened: OpenRun, config: ModelConfig, rows: Rows, meta: dict[str, object], dev: torch.device,
                 ranks: distributed.Context | None, progress: bool | None, threads: int | None,
                 releases: list) -> list[dict[str, object]]:
    """Write a new run's run.json, build the model and train it; a new run that fails before its first epoch is
    saved leaves nothing behind. Under torchrun process 0 alone writes."""
    main_rank = ranks is None or ranks.is_main
    run, settings, new = opened.run, opened.settings, opened.stored is None
    distributed.barrier(ranks)  # every rank has checked --out before rank 0 writes there
    made = not run.folder.exists()
    if new and main_rank:
        releases.append(run.create().claim())
    try:
        if new and main_rank:
            write_settings(run, {"settings": settings.stored(), "model_config": config.to_json(), "data": meta})
        torch.manual_seed(settings.seed)
        net = build_model(config)
        trainer = train if ranks is None else distributed.sharded_trainer(ranks)
        return trainer(net, rows.x, settings.training, device=dev, heldout=rows.held, run=run, resume=not new,
                       metadata=meta, progress=progress if main_rank else False, threads=threads)
    except Exception:
        if new and main_rank:
            remove_unstarted(run, made)
        raise


def remove_unstarted(run: RunFolder, made: bool) -> None:
    """A new run that failed before its first epoch was saved leaves nothing behind: its files, and its folder
    when this run made it, are removed (a run with a saved epoch stays, for --resume)."""
    if run.state.exists() or run.checkpoint.exists():
        return
    for path in (run.settings, run.log):
        path.unlink(missing_ok=True)
    if made:
        with contextlib.suppress(OSError):  # not empty: something else was put there meanwhile
            run.folder.rmdir()


def model_for(model: str | None, preset_name: object) -> str:
    """The model a new run trains: MODEL, else the preset's; a preset of another model is refused."""
    chosen = preset(str(preset_name)) if preset_name else None
    if model is None:
        if chosen is None:
            raise EntropyElboError(f"train: name the MODEL ({', '.join(sorted(MODELS))}) or a --preset")
        return str(chosen["model"])
    if model not in MODELS:
        raise EntropyElboError(f"train: model {model!r} unknown; use one of {', '.join(sorted(MODELS))}")
    if chosen is not None and chosen["model"] != model:
        raise EntropyElboError(f"--preset {preset_name} trains {chosen['model']}, not {model}; run `train "
                               f"{chosen['model']} --preset {preset_name}` (or drop MODEL)")
    return model


def check_stored(stored: dict[str, object], path: Path) -> dict[str, object]:
    """A run.json from disk: its settings and model config must be whole before a resume trusts them."""
    settings = stored.get("settings")
    if not isinstance(settings, dict):
        raise EntropyElboError(f"{path}: no 'settings' object; the run folder is damaged, start a new run")
    missing = [k for k in RUN_KEYS if k not in settings]
    if missing:
        raise EntropyElboError(f"{path}: settings lack {', '.join(missing)}; the run folder is damaged, start a new "
                               "run")
    try:
        kind = ModelConfig.from_json(str(stored["model_config"])).kind
    except (KeyError, ValueError, TypeError, EntropyElboError) as err:
        raise EntropyElboError(f"{path}: its model_config is missing or damaged ({err}); start a new run") from None
    if kind not in MODELS:
        raise EntropyElboError(f"{path}: its model_config names the unknown model {kind!r}; start a new run")
    return stored


def check_same_data(stored: dict[str, object], spec: str, path: Path, notify: Notify) -> None:
    """A resumed run's data file must be the one it started on (size and the hashes of its ends; mtime: a note)."""
    data = stored.get("data")
    old = data.get("fingerprint") if isinstance(data, dict) else None
    if not isinstance(old, dict):  # a synthetic set, or a run written before fingerprints
        return
    changed, touched = data_changes(old, fingerprint(spec))
    if changed:
        raise EntropyElboError(f"--resume {path}: the data {spec} changed since the run started "
                               f"({', '.join(changed)}); restore it, or start a new run on the new data")
    if touched:
        notify(f"note: {spec} was modified since the run started, but its size and the hashes of its first and "
               "last MiB are unchanged; resuming")


def training_data(x: np.ndarray, source: str, latents: int) -> np.ndarray:
    """The data as float32 in memory, checked finite (row and column named), with 1 <= H <= D."""
    d = int(np.prod(x.shape[1:]))
    if not 1 <= latents <= d:
        raise EntropyElboError(f"--latents {latents}: {source} has D={d} values per row; pass 1 <= --latents <= {d}")
    return np.concatenate(list(iter_batches(x, 65_536, source=source)))
