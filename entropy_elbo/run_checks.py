"""A resumed run's files from disk, checked whole before anything is written: the run state's fields (format,
epoch, optimizer JSON, random states) and the log's rows against the state's epoch.

The trainer appends an epoch's log row before it saves the state after that epoch (`train.save_epoch`), so the
log of a sound run holds rows 1, 2, ... up to at least the state's epoch; rows past it belong to an epoch a kill
cut short and are redone. A log that lacks one of the saved epochs was damaged after it was written.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from entropy_elbo.errors import CheckpointError, EntropyElboError, parse_json

RNG_KEYS = ("rng.generator", "rng.torch")  # every run state holds these (CUDA's states only where it ran there)
STATE_JSON = {"param_groups": list, "optim_scalars": dict}  # the optimizer's metadata, as JSON


def checked_epoch(path: Path, meta: dict[str, str], tensors: dict[str, torch.Tensor]) -> int:
    """The epoch a run state was saved after, once its metadata and random states are checked whole."""
    try:
        epoch = int(meta["epoch"])
    except (KeyError, ValueError):
        raise CheckpointError(f"{path}: the run state names no epoch; start a new run") from None
    if epoch < 0:
        raise CheckpointError(f"{path}: the run state says it was saved after epoch {epoch}, which is below 0; "
                              "the file is damaged or crafted, start a new run")
    for key, kind in STATE_JSON.items():
        value = parse_json(meta.get(key, ""), f"{path} metadata {key!r}")
        if not isinstance(value, kind):
            raise CheckpointError(f"{path}: metadata {key!r} is not a JSON {'object' if kind is dict else 'list'}; "
                                  "the file is damaged, start a new run")
    missing = [k for k in RNG_KEYS if k not in tensors]
    if missing:
        raise CheckpointError(f"{path}: the run state lacks its random state ({', '.join(missing)}), so a resume "
                              "could not continue the same run; start a new run")
    odd = [k for k in tensors if k.startswith("rng.") and (tensors[k].dtype != torch.uint8 or tensors[k].dim() != 1)]
    if odd:
        raise CheckpointError(f"{path}: random state {odd[0]!r} is not a 1-D uint8 tensor; the file is damaged, "
                              "start a new run")
    return epoch


def log_epochs(path: Path) -> tuple[list[int], int | None]:
    """The epochs of a run log's whole rows, and the line number (1-based) of the first torn or odd row, if any."""
    if not path.is_file():
        return [], None
    epochs: list[int] = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            return epochs, number
        epoch = row.get("epoch") if isinstance(row, dict) else None
        if type(epoch) is not int or epoch != len(epochs) + 1:
            return epochs, number
        epochs.append(epoch)
    return epochs, None


def check_log(path: Path, state_epoch: int) -> None:
    """The log must hold one whole row for each epoch 1 ... `state_epoch`, in order (rows after it are redone)."""
    epochs, bad = log_epochs(path)
    if len(epochs) >= state_epoch:
        return
    where = f"line {bad} is torn or out of order" if bad else "it ends there"
    raise EntropyElboError(f"{path}: holds rows for epochs 1 to {len(epochs)} but the run state was saved after "
                           f"epoch {state_epoch} ({where}); the log is written before the state, so it was damaged "
                           "afterwards: restore it from a copy, or start a new run")
