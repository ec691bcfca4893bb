"""Float32 batches of an array, streamed in bounded memory and checked finite; a seeded train/held-out split."""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Callable, Iterator

import numpy as np

from entropy_elbo.data.checks import check_finite
from entropy_elbo.data.shrink import size_guard
from entropy_elbo.errors import DataError

RELEASE_BYTES = 64 * 2**20  # a memory-mapped file's pages are dropped from RSS after this much is read


def raw_chunks(
    x: np.ndarray, batch_size: int, indices: np.ndarray | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, chunk) pairs of at most batch_size rows in their stored dtype, in `indices` order if given."""
    if batch_size <= 0:
        raise DataError(f"batch_size must be a positive number of rows, got {batch_size}")
    unshrunk = size_guard(x)  # a memory-mapped file truncated under us: one line, not a SIGBUS
    if indices is None:
        for start in range(0, len(x), batch_size):
            stop = min(start + batch_size, len(x))
            unshrunk()
            yield np.arange(start, stop), np.asarray(x[start:stop])  # read by the caller right away
        return
    indices = np.asarray(indices)
    if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
        raise DataError(f"indices must be a 1-d integer array, got shape {indices.shape} {indices.dtype}")
    if indices.size and (indices.min() < 0 or indices.max() >= len(x)):
        raise DataError(f"indices must lie in [0, {len(x)}), got [{indices.min()}, {indices.max()}]")
    for start in range(0, len(indices), batch_size):
        rows = indices[start : start + batch_size]
        order = np.argsort(rows, kind="stable")
        chunk = np.empty((len(rows), *x.shape[1:]), dtype=x.dtype)
        unshrunk()
        chunk[order] = x[rows[order]]  # sorted reads are sequential on a memmap
        yield rows, chunk


def iter_batches(
    x: np.ndarray,
    batch_size: int,
    *,
    source: str | None = None,
    indices: np.ndarray | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[np.ndarray]:
    """Contiguous float32 chunks of at most batch_size rows, checked finite; memory bounded by the chunk.

    Errors name `source`, else the memory-mapped file the array comes from, else "data".
    """
    source = source or str(getattr(x, "filename", None) or "data")
    unreleased = 0
    for rows, raw in raw_chunks(x, batch_size, indices):
        with np.errstate(over="ignore"):
            chunk = np.ascontiguousarray(raw, dtype=np.float32)  # (B, ...)
        if not chunk.flags.writeable:  # a read-only memmap slice: torch warns on those, so hand out a copy
            chunk = chunk.copy()
        check_finite(chunk, rows, source, raw)
        if transform is not None:
            chunk = np.ascontiguousarray(transform(chunk), dtype=np.float32)
        yield chunk
        unreleased += raw.nbytes
        if unreleased >= RELEASE_BYTES:
            release_pages(x)
            unreleased = 0
    release_pages(x)


def release_pages(x: np.ndarray) -> None:
    """Drop a shared memory map's pages from this process's resident set; the OS page cache keeps them.

    Reading a memory-mapped file maps every page it touches, so without this the resident set of a
    pass over a file grows to the file's size. Later reads fault the pages back in from the cache.
    """
    mm = getattr(x, "_mmap", None)
    if mm is None or getattr(x, "mode", "c") == "c" or not hasattr(mmap, "MADV_DONTNEED"):
        return  # not a memmap, or copy-on-write (its private pages would be lost), or no madvise here
    with contextlib.suppress(OSError, ValueError):  # a closed map or a refusing OS: only memory use is at stake
        mm.madvise(mmap.MADV_DONTNEED)


def split_indices(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random partition of range(n) into (train, heldout), each sorted for sequential reads."""
    if n < 1:
        raise DataError(f"cannot split {n} rows; pass a non-empty data set")
    if not 0.0 <= holdout < 1.0:
        raise DataError(f"holdout must lie in [0, 1), got {holdout}")
    n_held = min(int(round(n * holdout)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])
