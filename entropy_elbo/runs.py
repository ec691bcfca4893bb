"""A training run on disk: the model checkpoint, the resume state, the settings and a JSON-lines log.

`--out run/` makes the folder `run/` holding `model.safetensors`; `--out ckpt.safetensors` writes the
checkpoint there and the run folder `ckpt.run/` beside it. Every file is written atomically; a new run never
replaces a file it did not write, a run folder's paths stay where the run writes them, one process at a time
trains a run (an flock on its folder, released by the kernel when the process dies), and a resumed run checks
that its data file is the one it started on (shape, size, and a hash of the first and last MiB).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from entropy_elbo.atomic import atomic_write
from entropy_elbo.data.images import image_files
from entropy_elbo.errors import CheckpointError, EntropyElboError, parse_json
from entropy_elbo.run_checks import checked_epoch

STATE_FORMAT = "entropy-elbo-run-state/1"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".npy", ".npz", ".h5")  # --out names of other formats
SETTINGS, LOG, STATE, MODEL = "run.json", "log.jsonl", "state.safetensors", "model.safetensors"
CHUNK = 2**20  # bytes hashed at each end of a data file for its fingerprint


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

    @property
    def outputs(self) -> list[Path]:
        """Every file a run writes."""
        return [self.settings, self.log, self.state, self.checkpoint]

    def create(self) -> RunFolder:
        """Make the run folder (its parent must exist) and claim it: one run per folder."""
        parent = self.folder.parent
        if not parent.is_dir():
            raise EntropyElboError(f"--out {self.folder}: folder {parent} does not exist; create it first")
        try:
            self.folder.mkdir(exist_ok=True)
            os.close(os.open(self.settings, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise EntropyElboError(f"--out {self.folder}: another training run has just claimed this folder; "
                                   "choose another --out") from None
        except OSError as err:
            raise EntropyElboError(f"--out {self.folder}: cannot create the run folder ({err.strerror})") from None
        return self

    def check_fresh(self, out: Path) -> None:
        """A new run replaces nothing: none of the files it would write may exist yet."""
        taken = [p for p in self.outputs if p.exists() or p.is_symlink()]
        if taken:
            raise EntropyElboError(f"--out {out}: {taken[0]} already exists and a new run never replaces a file; "
                                   "remove it or choose another --out")

    def claim(self) -> Callable[[], None]:
        """Lock the run for this process: an flock on the run folder itself (no file is written). The returned call
        releases it, and the kernel does when the process dies, so a killed run never leaves it stuck."""
        try:
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as err:
            raise EntropyElboError(f"{self.folder}: cannot open the run folder ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise EntropyElboError(f"{self.folder}: another process is training this run now (it holds the folder's "
                                   "lock); wait for it to end, or stop it, before --resume") from None
        return lambda: os.close(fd)


def run_for_out(out: str | Path) -> RunFolder:
    """The run folder for `--out`: a .safetensors file gets `<stem>.run/` beside it, anything else is the folder."""
    out = Path(out)
    if out.suffix.lower() in CHECKPOINT_SUFFIXES and not out.is_dir():
        raise EntropyElboError(f"--out {out}: checkpoints are written as .safetensors; pass --out "
                               f"{out.with_suffix('.safetensors')} or a run folder name")
    if out.suffix == ".safetensors":
        return RunFolder(out.with_suffix(".run"), out)
    if out.exists() and not out.is_dir():
        raise EntropyElboError(f"--out {out}: is an existing file, not a run folder; pass a new folder name, or "
                               "NAME.safetensors for a checkpoint with its run folder beside it")
    return RunFolder(out, out / MODEL)


def run_for_resume(path: str | Path) -> RunFolder:
    """The run folder that `--resume PATH` names (a run folder, or the checkpoint it writes)."""
    path = Path(path)
    folder = path.with_suffix(".run") if path.suffix == ".safetensors" else path
    if not (folder / SETTINGS).is_file():
        raise EntropyElboError(f"--resume {path}: no run to resume ({folder / SETTINGS} is missing); pass the run "
                               "folder or checkpoint a `train --out` wrote")
    settings = read_settings(folder)
    named = settings.get("checkpoint", MODEL)
    places = {Path(os.path.normpath(folder / MODEL)): MODEL}  # the two places `train --out` writes a checkpoint
    if folder.suffix == ".run":
        places[Path(os.path.normpath(folder.with_suffix(".safetensors")))] = f"../{folder.stem}.safetensors"
    checkpoint = Path(os.path.normpath(folder / str(named))) if isinstance(named, str) else None
    if checkpoint not in places:
        raise EntropyElboError(f"{folder / SETTINGS}: names the checkpoint {named!r}, outside the places this run "
                               f"writes ({' or '.join(places.values())}); the file is damaged or crafted, start a "
                               "new run")
    return RunFolder(folder, checkpoint)


def fingerprint(spec: str) -> dict[str, object] | None:
    """A data file's size, mtime and SHA-256 of its first and last MiB (an image folder's: of the listing of the
    images it reads, so a run's own files saved beside them are not data); None for a synthetic set's name.
    Cheap at any size, and catches data replaced under a run."""
    path = Path(spec)
    if path.is_dir():
        entries = [(p.name, p.stat().st_size) for p in image_files(path)]
        listing = json.dumps(entries).encode()
        return {"files": len(entries), "size": sum(n for _, n in entries),
                "listing": hashlib.sha256(listing).hexdigest()}
    if not path.is_file():
        return None
    stat = path.stat()
    with open(path, "rb") as fh:
        head = fh.read(CHUNK)
        fh.seek(max(stat.st_size - CHUNK, 0))
        tail = fh.read(CHUNK)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head": hashlib.sha256(head).hexdigest(),
            "tail": hashlib.sha256(tail).hexdigest()}


def data_changes(old: dict[str, object], new: dict[str, object] | None) -> tuple[list[str], bool]:
    """What differs between a run's stored data fingerprint and today's: (changes that refuse, mtime alone)."""
    if new is None:
        return ["it is no longer a file or folder"], False
    words = {"size": "size {} -> {} bytes", "files": "files {} -> {}", "head": "first MiB differs",
             "tail": "last MiB differs", "listing": "file names or sizes differ"}
    changed = [words[k].format(old[k], new.get(k)) for k in words if k in old and old[k] != new.get(k)]
    return changed, old.get("mtime_ns") not in (None, new.get("mtime_ns"))


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
        rows.append(current_names(row))
    return rows


RENAMED = {"elbo": "mc_elbo"}  # old log key -> today's (the names of `estimate --json`): old logs stay readable


def current_names(row: dict[str, object]) -> dict[str, object]:
    """A log row under today's key names: a row written before the rename has `elbo` for the MC ELBO."""
    return {RENAMED.get(k, k) if RENAMED.get(k) not in row else k: v for k, v in row.items()}


def append_log(path: Path, row: dict[str, object]) -> None:
    """Append one JSON row and flush it to disk; never through a link (it must be the run's own file)."""
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666), "a") as fh:
            fh.write(json.dumps(row, allow_nan=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise EntropyElboError(f"{path}: could not be written ({err.strerror or err}); check the disk space, and that "
                               "it is the run's own file, not a link") from None


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
    """The epoch a run state was saved after, checking that the whole file reads and its fields are whole (before
    any training starts)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))  # every tensor must read
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot read the run state ({err}); start a new run") from None
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not an entropy-elbo run state; start a new run")
    return checked_epoch(path, meta, tensors)


def remove_temporaries(run: RunFolder) -> None:
    """Delete the temporary files (`.NAME.*.tmp`) of writes that a killed run left unfinished."""
    places = [(run.folder, name) for name in (SETTINGS, LOG, STATE)] + [(run.checkpoint.parent, run.checkpoint.name)]
    for folder, name in places:
        for tmp in folder.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
