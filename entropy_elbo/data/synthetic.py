"""The paper's synthetic data: pPCA (App. D.5), PCA-ring (eq. 80-82), manifold (App. D.4), stream (App. A).

Every generator is seeded with `np.random.default_rng(seed)` and draws its fixed structure (W and mu, the
manifold's index pairs, the stream's rotation U) before any sample, so the structure depends on the seed
only, never on n. Samples come back float32 (what every batch is); the generating parameters float64.

Each generator is a stream of chunks of at most CHUNK_ROWS rows (`synthetic_chunks`), so that `entropy-elbo data`
writes any size the disk holds in bounded memory; the whole array is those chunks joined, the same bits as one
draw of n rows: a copy of the generator is advanced past the first block of draws (z, or the stream's e) so that
the second block (eps, noise) starts where a single draw would have started it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np

from entropy_elbo.errors import DataError

PPCA_D, PPCA_H, PPCA_SIGMA = 10, 2, 0.1  # App. D.5: D=10, H=2, sigma_gen=0.1
MANIFOLD_D = 100  # App. D.4
STREAM_D, STREAM_NOISE = 10, 0.1  # App. A: D=10, x = U diag(s) e + 0.1 n
CHUNK_ROWS = 16_384  # manifold: about 60 MB of float64 temporaries per chunk


def _blocks(n: int) -> Iterator[int]:
    """Sizes of consecutive chunks of at most CHUNK_ROWS rows covering n rows."""
    for start in range(0, n, CHUNK_ROWS):
        yield min(CHUNK_ROWS, n - start)


def _split_draws(rng: np.random.Generator, n: int, width: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(first, second): `first` draws the n x width normals next in `rng`; `second` starts right after them.

    Drawn chunk by chunk, the normals are the same as one (n, width) draw (numpy fills arrays in order).
    """
    first = copy.deepcopy(rng)
    for k in _blocks(n):
        rng.standard_normal((k, width))  # advance past the first block, in bounded memory
    return first, rng


def _check_n(n: int, name: str) -> None:
    """Refuse a non-positive sample count."""
    if int(n) != n or n < 1:
        raise DataError(f"{name}: the number of samples must be a positive integer, got {n}")


# ---------------------------------------------------------------------------------------------- pPCA and ring


def _draw_ppca_params(rng: np.random.Generator) -> dict:
    """W_gen (D, H) and mu_gen (D,) uniform in [0, 1], sigma_gen^2 = 0.01 (App. D.5, eq. 78-79)."""
    w = rng.uniform(0.0, 1.0, size=(PPCA_D, PPCA_H))
    mu = rng.uniform(0.0, 1.0, size=PPCA_D)
    return {"W": w, "mu": mu, "sigma2": PPCA_SIGMA**2}


def ppca_truth(seed: int = 0) -> dict:
    """The generating W (D, H), mu (D,) and sigma2 behind ppca(n, seed) and ring(n, seed) (eq. 78-81)."""
    return _draw_ppca_params(np.random.default_rng(seed))


def _ppca_centred(n: int, seed: int) -> tuple[Iterator[np.ndarray], dict]:
    """Chunks of W z + sigma eps (B, D) in float64 without the mean, and the parameters (eq. 78-79, 80-81)."""
    rng = np.random.default_rng(seed)
    truth = _draw_ppca_params(rng)
    z_rng, eps_rng = _split_draws(rng, n, PPCA_H)  # all n z's come before all n eps's, as in one draw

    def chunks() -> Iterator[np.ndarray]:
        for k in _blocks(n):
            z = z_rng.standard_normal((k, PPCA_H))  # (B, H)
            eps = eps_rng.standard_normal((k, PPCA_D))  # (B, D)
            yield z @ truth["W"].T + PPCA_SIGMA * eps

    return chunks(), truth


def _ppca_chunks(n: int, seed: int) -> Iterator[np.ndarray]:
    centred, truth = _ppca_centred(n, seed)
    for x in centred:
        yield (x + truth["mu"]).astype(np.float32)


def _ring_chunks(n: int, seed: int) -> Iterator[np.ndarray]:
    centred, truth = _ppca_centred(n, seed)  # same W, mu, z, eps as ppca(n, seed)
    for x in centred:
        norm = np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(np.float64).tiny)  # (B, 1)
        yield (truth["mu"] + x / 10.0 + x / norm).astype(np.float32)


def ppca(n: int = 20_000, seed: int = 0) -> np.ndarray:
    """Probabilistic PCA data x = W z + mu + 0.1 eps, D=10, H=2 (App. D.5, eq. 78-79); float32 (N, 10)."""
    _check_n(n, "ppca")
    return np.concatenate(list(_ppca_chunks(n, seed)))


def ring(n: int = 20_000, seed: int = 0) -> np.ndarray:
    """PCA-ring x' = mu + x/10 + x/|x| with x ~ N(0, W W^T + sigma^2 I) (App. D.5, eq. 80-82); float32."""
    _check_n(n, "ring")
    return np.concatenate(list(_ring_chunks(n, seed)))


# ---------------------------------------------------------------------------------------------- manifold


def _manifold_raw(n: int, seed: int, k: int) -> Iterator[np.ndarray]:
    """Chunks (B, D) of k Gaussian dims and D-k dims 0.35 cos(x_a^2 + x_b^2), before the column scaling."""
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, k, size=(MANIFOLD_D - k, 2))  # (D-k, 2): a, b among the first k, with replacement
    for b in _blocks(n):
        base = 0.35 * rng.standard_normal((b, k)) - 0.175  # (B, k), as in the authors' code
        rest = 0.35 * np.cos(base[:, pairs[:, 0]] ** 2 + base[:, pairs[:, 1]] ** 2)  # (B, D-k)
        yield np.concatenate([base, rest], axis=1)


def _manifold_chunks(n: int, seed: int, k: int = 10) -> Iterator[np.ndarray]:
    """Two passes over the same draws: the columns' min and max, then every chunk scaled to [0, 1]."""
    if not 1 <= k < MANIFOLD_D:
        raise DataError(f"manifold: k must lie in [1, {MANIFOLD_D - 1}], got {k}")
    lo, hi = np.full(MANIFOLD_D, np.inf), np.full(MANIFOLD_D, -np.inf)
    for x in _manifold_raw(n, seed, k):
        lo, hi = np.minimum(lo, x.min(axis=0)), np.maximum(hi, x.max(axis=0))
    span = np.where(hi > lo, hi - lo, 1.0)  # a constant column becomes 0
    for x in _manifold_raw(n, seed, k):
        yield ((x - lo) / span).astype(np.float32)


def manifold(n: int = 50_000, seed: int = 0, k: int = 10) -> np.ndarray:
    """Manifold data, D=100: k Gaussian dims, the rest 0.35 cos(x_a^2 + x_b^2), scaled to [0,1] (App. D.4)."""
    _check_n(n, "manifold")
    return np.concatenate(list(_manifold_chunks(n, seed, k)))


# ---------------------------------------------------------------------------------------------- stream


class StreamPhase(NamedTuple):
    """Rows [start, stop) of stream() have intrinsic dimension dim (App. A)."""

    start: int
    stop: int
    dim: int


def stream_phases(n_per_phase: int = 100_000, dims: tuple[int, ...] = (6, 2, 4)) -> tuple[StreamPhase, ...]:
    """Row ranges and true intrinsic dimensions of stream(n_per_phase, seed, dims), in order (App. A)."""
    return tuple(StreamPhase(i * n_per_phase, (i + 1) * n_per_phase, d) for i, d in enumerate(dims))


def _random_orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    """A Haar-distributed orthogonal (d, d) matrix: QR of a Gaussian matrix with the signs fixed."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _draw_stream_params(rng: np.random.Generator) -> dict:
    """One rotation U (D, D) for the whole stream and the scales s = linspace(1, 5, D) (App. A)."""
    return {"U": _random_orthogonal(rng, STREAM_D), "s": np.linspace(1.0, 5.0, STREAM_D),
            "noise_std": STREAM_NOISE}


def stream_truth(seed: int = 0) -> dict:
    """The rotation U, full scale vector s and noise std behind stream(..., seed) (App. A)."""
    return _draw_stream_params(np.random.default_rng(seed))


def _stream_chunks(n_per_phase: int, seed: int, dims: tuple[int, ...] = (6, 2, 4)) -> Iterator[np.ndarray]:
    if not dims or any(not 1 <= d <= STREAM_D for d in dims):
        raise DataError(f"stream: every phase dimension must lie in [1, {STREAM_D}], got {tuple(dims)}")
    rng = np.random.default_rng(seed)
    truth = _draw_stream_params(rng)
    for d in dims:
        s = np.where(np.arange(STREAM_D) < d, truth["s"], 0.0)  # (D,)
        e_rng, rng = _split_draws(rng, n_per_phase, STREAM_D)  # a phase draws all its e, then all its noise
        for k in _blocks(n_per_phase):
            e = e_rng.standard_normal((k, STREAM_D))  # (B, D)
            noise = rng.standard_normal((k, STREAM_D))  # (B, D)
            yield ((e * s) @ truth["U"].T + STREAM_NOISE * noise).astype(np.float32)


def stream(n_per_phase: int = 100_000, seed: int = 0, dims: tuple[int, ...] = (6, 2, 4)) -> np.ndarray:
    """Streaming data, D=10: phases x = U diag(s) e + 0.1 n with s past the phase's dim zeroed (App. A)."""
    _check_n(n_per_phase, "stream")
    return np.concatenate(list(_stream_chunks(n_per_phase, seed, dims)))


# ---------------------------------------------------------------------------------------------- registry


SYNTHETIC: dict[str, Callable[..., np.ndarray]] = {
    "ppca": ppca,
    "ring": ring,
    "manifold": manifold,
    "stream": stream,
}


SYNTHETIC_DIMS = {"ppca": PPCA_D, "ring": PPCA_D, "manifold": MANIFOLD_D, "stream": STREAM_D}


def synthetic_chunks(name: str, n: int | None = None, seed: int = 0) -> tuple[tuple[int, int], Iterator[np.ndarray]]:
    """The shape (N, D) of a synthetic set and its rows as float32 chunks of at most CHUNK_ROWS rows, drawn as
    they are consumed (bounded memory for any n); joined, they are `make_synthetic(name, n, seed)`."""
    if name not in SYNTHETIC:
        raise DataError(f"unknown synthetic data set {name!r}; choose one of {', '.join(sorted(SYNTHETIC))}")
    if n is None:
        n = {"ppca": 20_000, "ring": 20_000, "manifold": 50_000, "stream": 300_000}[name]
    _check_n(n, name)
    if name == "stream":
        phases = len(stream_phases(1))
        if n % phases:
            hint = n - n % phases or phases
            raise DataError(f"stream: n={n} must be a multiple of its {phases} phases, e.g. {hint}")
        return (n, STREAM_D), _stream_chunks(n // phases, seed)
    chunks = {"ppca": _ppca_chunks, "ring": _ring_chunks, "manifold": _manifold_chunks}[name]
    return (n, SYNTHETIC_DIMS[name]), chunks(n, seed)


def make_synthetic(name: str, n: int | None = None, seed: int = 0) -> np.ndarray:
    """A synthetic set by name, n rows in all (default: the paper's size); stream splits n over its phases."""
    _, chunks = synthetic_chunks(name, n, seed)
    return np.concatenate(list(chunks))
