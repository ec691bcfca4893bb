"""Per-feature scaling (min-max or standard), fitted in one streaming float64 pass over the training rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from entropy_elbo.data.batches import raw_chunks
from entropy_elbo.data.checks import check_finite
from entropy_elbo.errors import DataError


@dataclass(frozen=True, eq=False)
class Scaler:
    """A fitted per-feature affine map x -> (x - shift) / scale, applied to float32 batches."""

    kind: str
    shift: np.ndarray  # (F,) or () for "none"
    scale: np.ndarray  # (F,), 1 where a column is constant

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Scale one batch (B, ...) feature-wise and return float32."""
        flat = x.reshape(len(x), -1).astype(np.float64)  # (B, F)
        return ((flat - self.shift) / self.scale).astype(np.float32).reshape(x.shape)

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """Map a scaled batch back to data units, float32."""
        flat = x.reshape(len(x), -1).astype(np.float64)  # (B, F)
        return (flat * self.scale + self.shift).astype(np.float32).reshape(x.shape)


def fit_scaler(
    x: np.ndarray,
    kind: Literal["minmax", "standard", "none"],
    batch_size: int = 65536,
    indices: np.ndarray | None = None,
    source: str = "data",
) -> Scaler:
    """Fit a min-max or standard scaler in one streaming float64 pass over the given (training) rows."""
    if kind == "none":
        return Scaler("none", np.zeros(()), np.ones(()))
    if kind not in ("minmax", "standard"):
        raise DataError(f"unknown scaling {kind!r}; use 'minmax', 'standard' or 'none'")
    count, mean, m2 = 0, 0.0, 0.0
    lo, hi = np.inf, -np.inf
    for rows, raw in raw_chunks(x, batch_size, indices):
        chunk = raw.reshape(len(raw), -1).astype(np.float64)  # (B, F)
        check_finite(chunk, rows, source)
        lo, hi = np.minimum(lo, chunk.min(0)), np.maximum(hi, chunk.max(0))
        b, b_mean = len(chunk), chunk.mean(0)
        delta = b_mean - mean  # Chan et al. pairwise update of mean and sum of squares
        m2 = m2 + ((chunk - b_mean) ** 2).sum(0) + delta**2 * count * b / (count + b)
        mean = mean + delta * b / (count + b)
        count += b
    if count == 0:
        raise DataError(f"{source}: no rows to fit the {kind} scaler on; pass a non-empty training split")
    if kind == "minmax":
        return Scaler(kind, lo, _nonzero(hi - lo))
    return Scaler(kind, mean, _nonzero(np.sqrt(m2 / count)))


def _nonzero(scale: np.ndarray) -> np.ndarray:
    """Replace zero scales (constant columns) by 1, so they map to 0 instead of dividing by zero."""
    return np.where(scale > 0, scale, 1.0)
