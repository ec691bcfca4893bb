"""A table's preprocessing at training time (--drop-column, the fitted --scale), recorded in the checkpoint so
that `estimate`, `collapse` and `compare` read the same file as `train` did."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from entropy_elbo.choices import PREPROCESS
from entropy_elbo.data.batches import iter_batches
from entropy_elbo.data.files import COPY_CHUNK_ROWS, without_column
from entropy_elbo.data.scaling import Scaler
from entropy_elbo.errors import DataError

CHOICES = PREPROCESS


def record(raw_shape: tuple[int, ...], drop_column: int | None, scaler: Scaler) -> dict[str, object] | None:
    """The checkpoint metadata of a table's preprocessing: the raw row shape, the dropped column, the scaler's
    numbers (float64, exact through JSON); None when nothing was done to the rows."""
    if drop_column is None and scaler.kind == "none":
        return None
    return {"raw_shape": list(raw_shape), "drop_column": drop_column, "scale": scaler.kind,
            "shift": np.asarray(scaler.shift, dtype=np.float64).tolist(),
            "scale_by": np.asarray(scaler.scale, dtype=np.float64).tolist()}


def steps(rec: dict[str, object]) -> str:
    """What the training run did to the rows, in words."""
    done = [] if rec.get("drop_column") is None else [f"column {rec['drop_column']} dropped"]
    if rec.get("scale", "none") != "none":
        done.append(f"the {rec['scale']} scaler fitted on its training rows applied")
    return " and ".join(done)


def as_trained(x: np.ndarray, rec: dict[str, object], spec: str, choice: str = "auto") -> tuple[np.ndarray, str]:
    """x with the recorded preprocessing applied when it has the raw shape (or `choice` says so), and a note
    saying which was done. A dropped column tells raw from preprocessed rows by their shape; a scaler alone
    cannot on a file, so `choice` must say (a named set is always raw)."""
    if choice not in CHOICES:
        raise DataError(f"preprocess (--preprocess): got {choice!r}; use one of {', '.join(CHOICES)}")
    raw, got, done = tuple(int(v) for v in rec["raw_shape"]), tuple(x.shape[1:]), steps(rec)
    if choice == "auto":
        if rec.get("drop_column") is None and Path(spec).exists():
            raise DataError(f"{spec}: its checkpoint was trained with {done}, and a file's rows have the same "
                            "shape raw or scaled; pass --preprocess as-trained to scale them as in training, or "
                            "--preprocess none if the file is already scaled")
        choice = "as-trained" if got == raw else "none"
    if choice == "none":
        return x, (f"note: {spec} read as is (rows of shape {got}, not the raw {raw}), taken as already "
                   f"preprocessed: training's {done} not re-applied")
    if got != raw:
        raise DataError(f"{spec}: rows of shape {got}, but the checkpoint was trained from raw rows of shape {raw}; "
                        "--preprocess as-trained needs the raw file (or pass --preprocess none)")
    if rec.get("drop_column") is not None:
        x = without_column(x, int(rec["drop_column"]), Path(spec))
    if rec.get("scale", "none") != "none":
        x = _scaled(x, Scaler(str(rec["scale"]), np.asarray(rec["shift"]), np.asarray(rec["scale_by"])), spec)
    return x, f"note: {spec} preprocessed as in training (recorded in the checkpoint): {done}"


def _scaled(x: np.ndarray, scaler: Scaler, source: str) -> np.ndarray:
    """x through `scaler` as float32, in chunks, the same arithmetic as training's; a memmap's copy stays on disk."""
    if isinstance(x, np.memmap):
        with tempfile.TemporaryFile() as f:  # mmap keeps its own descriptor; the file is already unlinked
            out = np.memmap(f, dtype=np.float32, mode="w+", shape=x.shape)
    else:
        out = np.empty(x.shape, dtype=np.float32)
    start = 0
    for chunk in iter_batches(x, COPY_CHUNK_ROWS, source=source, transform=scaler):
        out[start : start + len(chunk)] = chunk
        start += len(chunk)
    return out
