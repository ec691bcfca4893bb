"""Checks every opened array and every batch passes: a real numeric dtype, an (N, D) or (N, C, H, W) shape,
and values whose squares a row can sum in float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from entropy_elbo.errors import DataError


def check_dtype(dtype: np.dtype, path: Path) -> None:
    """Refuse dtypes that are not real numbers (object, complex, strings, records, dates)."""
    if dtype.kind not in "fiub" or dtype.fields is not None:
        raise DataError(f"{path}: dtype {dtype} is not real numeric; save the data as float32")


def check_shape(shape: tuple[int, ...], path: Path) -> None:
    """Require (N, D) tables or (N, C, H, W) images with at least one row and one feature."""
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise DataError(f"{path}: array of shape {shape} has a negative dimension; the header is damaged, "
                        "re-save it with numpy.save")
    if len(shape) == 1:
        raise DataError(f"{path}: 1-d array of shape {shape}; reshape it to (N, 1) for one feature")
    if len(shape) not in (2, 4):
        raise DataError(f"{path}: array of shape {shape} has {len(shape)} dims; need (N, D) or (N, C, H, W)")
    if shape[0] == 0:
        raise DataError(f"{path}: array of shape {shape} has 0 rows; pass a non-empty data set")
    if 0 in shape[1:]:
        raise DataError(f"{path}: array of shape {shape} has no features; pass a non-empty data set")


def check_array(x: np.ndarray, path: Path) -> None:
    """Dtype and shape checks for any opened array."""
    check_dtype(x.dtype, path)
    check_shape(x.shape, path)

def magnitude_limit(row_numel: int) -> float:
    """The largest |x| whose square, summed over a row of `row_numel` values, stays finite in float32.

    Every Gaussian log-density of the estimators sums (x - mu)^2 over a row; beyond this they overflow (or, in
    `collapse`, the encoder's outputs grow without meaning), so such data is refused wherever it is read.
    """
    return float(np.sqrt(np.finfo(np.float32).max / max(1, row_numel)))


def check_finite(chunk: np.ndarray, rows: np.ndarray, source: str, raw: np.ndarray | None = None) -> None:
    """Raise a DataError naming the first row and column holding NaN, Inf or a value too large to use."""
    limit = magnitude_limit(int(np.prod(chunk.shape[1:])))
    if chunk.size == 0 or _within(chunk, limit):  # one reduction, no copies; only a chunk that fails it is
        return  # searched for its first bad value
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(chunk) <= limit)
    if not bad.any():
        return
    pos = np.unravel_index(int(np.argmax(bad)), chunk.shape)
    value = chunk[pos] if raw is None else raw[pos]
    where = f"column {pos[1]}" if chunk.ndim == 2 else f"position {tuple(int(p) for p in pos[1:])}"
    if not np.isfinite(value):
        what = f"a non-finite value {value}"
    elif abs(float(value)) > float(np.finfo(np.float32).max):
        what = f"a value {value} is too large for float32"
    else:
        what = (f"the value {value:g}, beyond +-{limit:.3g} where its square summed over a row of "
                f"{int(np.prod(chunk.shape[1:]))} values overflows float32")
    raise DataError(f"{source}: row {int(rows[pos[0]])}, {where} holds {what}; clean or rescale the data first")


def _within(chunk: np.ndarray, limit: float) -> bool:
    """Every |value| <= limit, by one reduction that a NaN or Inf fails: a float32 chunk's sum of squares (each
    rounded square is at most the rounded sum of them all) below the rounded limit^2; else its max and min."""
    if chunk.dtype != np.float32 or not chunk.flags.c_contiguous or not chunk.flags.writeable:
        return bool(chunk.max() <= limit and chunk.min() >= -limit)
    import torch  # data is read when torch is loaded anyway; its dot runs on torch's threads, not BLAS's own

    below = np.float32(limit)
    if below > limit:  # the largest float32 at most the limit: a value beyond the limit squares to at least this
        below = np.nextafter(below, np.float32(0))
    flat = torch.from_numpy(chunk).view(-1)
    return float(torch.dot(flat, flat)) < float(below * below)
