"""A training run on disk: the model checkpoint, the resume state, the settings and a JSON-lines log.

`--out run/` makes the folder `run/` holding `model.safetensors`; `--out ckpt.safetensors` writes the
checkpoint there and the run folder `ckpt.run/` beside it. Every file is written atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from entropy_elbo.checkpoints.native import atomic_write
from entropy_elbo.errors import CheckpointError, EntropyElboError, parse_json

STATE_FORMAT = "entropy-elbo-run-state/1"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".npy", ".npz", ".h5")  # --out names of other formats
SETTINGS, LOG, STATE, MODEL = "run.json", "log.jsonl", "state.safetensors", "model.safetensors"


@dataclass(frozen=True)
class RunFolder:
    """Where one run keeps its files."""

    folder: Path
    checkpoint: Path

    @property
    def log(self) -> Path:
        return self.folder / LOG

    @property
    def state(self) -> Path:
        return self.folder / STATE

    @property
    def settings(self) -> Path:
        return self.folder / SETTINGS

    def create(self) -> RunFolder:
        """Make the run folder (its parent must exist)."""
        parent = self.folder.parent
        if not parent.is_dir():
            raise EntropyElboError(f"--out {self.folder}: folder {parent} does not exist; create it first")
        try:
            self.folder.mkdir(exist_ok=True)
            os.close(os.open(self.settings, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # claim it: one run per folder
        except FileExistsError:
            raise EntropyElboError(f"--out {self.folder}: another training run has just claimed this folder; "
                                   "choose another --out") from None
        except OSError as err:
            raise EntropyElboError(f"--out {self.folder}: cannot create the run folder ({err.strerror})") from None
        return self


def run_for_out(out: str | Path) -> RunFolder:
    """The run folder for `--out`: a .safetensors file gets `<stem>.run/` beside it, anything else is the folder."""
    out = Path(out)
    if out.suffix.lower() in CHECKPOINT_SUFFIXES and not out.is_dir():
        raise EntropyElboError(f"--out {out}: checkpoints are written as .safetensors; pass --out "
                               f"{out.with_suffix('.safetensors')} or a run folder name")
    if out.suffix == ".safetensors":
        return RunFolder(out.with_suffix(".run"), out)
    return RunFolder(out, out / MODEL)


def run_for_resume(path: str | Path) -> RunFolder:
    """The run folder that `--resume PATH` names (a run folder, or the checkpoint it writes)."""
    path = Path(path)
    folder = path.with_suffix(".run") if path.suffix == ".safetensors" else path
    if not (folder / SETTINGS).is_file():
        raise EntropyElboError(f"--resume {path}: no run to resume ({folder / SETTINGS} is missing); pass the run "
                               "folder or checkpoint a `train --out` wrote")
    settings = read_settings(folder)
    checkpoint = Path(os.path.normpath(folder / settings.get("checkpoint", MODEL)))
    return RunFolder(folder, checkpoint)


def write_settings(run: RunFolder, settings: dict[str, object]) -> None:
    """run.json: everything needed to rebuild the model and the data, and where the checkpoint lives."""
    data = {**settings, "checkpoint": os.path.relpath(run.checkpoint, run.folder)}
    text = json.dumps(data, indent=2, sort_keys=True)
    atomic_write(run.settings, lambda tmp: Path(tmp).write_text(text))


def read_settings(folder: Path) -> dict[str, object]:
    try:
        text = (folder / SETTINGS).read_text()
        if not text:
            raise EntropyElboError(f"{folder / SETTINGS}: empty: the run was stopped before it started; remove "
                                   f"{folder} and train again")
    except (OSError, ValueError) as err:
        raise EntropyElboError(f"{folder / SETTINGS}: unreadable run settings ({err}); start a new run") from None
    try:
        data = parse_json(text, str(folder / SETTINGS))
    except EntropyElboError as err:
        raise EntropyElboError(f"{err}: unreadable run settings; start a new run") from None
    if not isinstance(data, dict):
        raise EntropyElboError(f"{folder / SETTINGS}: not a JSON object; start a new run")
    return data


def read_log(path: Path) -> list[dict[str, object]]:
    """The rows (JSON objects) of a JSON-lines log; a torn last line (a killed writer) is dropped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = parse_json(line, str(path))
        except EntropyElboError:
            break
        if not isinstance(row, dict):
            break
        rows.append(row)
    return rows


def append_log(path: Path, row: dict[str, object]) -> None:
    """Append one JSON row and flush it to disk."""
    with open(path, "a") as fh:
        fh.write(json.dumps(row, allow_nan=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def rewrite_log(path: Path, rows: list[dict[str, object]]) -> None:
    """Replace the log by `rows` atomically (used on resume to drop rows past the saved state)."""
    text = "".join(json.dumps(r, allow_nan=True) + "\n" for r in rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               generator: torch.Generator, epoch: int) -> None:
    """Weights, optimizer state and every random state after `epoch` epochs, in one atomic safetensors file."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, object]] = {}
    for idx, entry in opt["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    tensors["rng.generator"] = generator.get_state().cpu()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    meta = {"format": STATE_FORMAT, "epoch": str(epoch), "param_groups": json.dumps(opt["param_groups"]),
            "optim_scalars": json.dumps(scalars), "generator_device": str(generator.device)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               generator: torch.Generator) -> int:
    """Restore what `save_state` wrote into model, optimizer and random generators; returns the epoch."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot read the run state ({err}); start a new run") from None
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not an entropy-elbo run state; start a new run")
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model ({str(err).splitlines()[0]})") from None
    state: dict[int, dict[str, object]] = {}
    for idx, entry in parse_json(meta["optim_scalars"], f"{path} optim_scalars").items():
        state.setdefault(int(idx), {}).update(entry)
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value  # load_state_dict moves them to the parameters' device
    try:
        groups = parse_json(meta["param_groups"], f"{path} param_groups")
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path}: its optimizer state does not fit this version's optimizer ({err}); "
                              "start a new run with the same settings instead of --resume") from None
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k[9:]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return int(meta["epoch"])


def state_epoch(path: Path) -> int:
    """The epoch a run state was saved after, checking that the whole file reads (before any training starts)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        load_file(str(path))  # every tensor must read
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot read the run state ({err}); start a new run") from None
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not an entropy-elbo run state; start a new run")
    try:
        return int(meta["epoch"])
    except (KeyError, ValueError):
        raise CheckpointError(f"{path}: the run state names no epoch; start a new run") from None


def remove_temporaries(run: RunFolder) -> None:
    """Delete the temporary files (`.NAME.*.tmp`) of writes that a killed run left unfinished."""
    places = [(run.folder, name) for name in (SETTINGS, LOG, STATE)] + [(run.checkpoint.parent, run.checkpoint.name)]
    for folder, name in places:
        for tmp in folder.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
