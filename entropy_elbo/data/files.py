"""Data files: open a .npy/.npz/.csv/idx table by its format, drop a column, or resolve a named set or a folder.

Design: `open_array` always returns a numpy array, through the module of its format (`npy`, `text`, `idx`).
A `.npy` comes back memory-mapped (`np.memmap`), so nothing is read until `iter_batches` slices a chunk;
dropping its first or last column is a zero-copy view of the memmap, and dropping an interior column copies
the table chunk by chunk into an anonymous temporary file that is memory-mapped in turn (bounded RAM, one
pass). `.npz` and text files are read into memory (text as float32, the precision every batch has anyway).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from entropy_elbo.data.checks import check_array
from entropy_elbo.data.idx import is_idx, open_idx
from entropy_elbo.data.images import load_image_folder
from entropy_elbo.data.npy import open_npy, open_npz
from entropy_elbo.data.text import TEXT_SUFFIXES, open_text
from entropy_elbo.errors import DataError
from entropy_elbo.limits import check_regular

COPY_CHUNK_ROWS = 65_536


# ---------------------------------------------------------------------------------------------- opening


def open_array(path: str | Path, key: str | None = None, drop_column: int | None = None) -> np.ndarray:
    """A data table (N, D) or image stack (N, C, H, W) from .npy (memory-mapped), .npz, .csv/.txt (or .gz of
    either) or an idx file (MNIST's train-images-idx3-ubyte[.gz]: pixels / 255)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; pass a .npy/.npz/.csv file (or use load_image_folder)")
    check_regular(path, "a .npy, .npz or .csv data file", DataError)
    suffix = path.suffix.lower()
    if key is not None and suffix != ".npz":
        raise DataError(f"{path}: --key {key!r} applies to .npz files only; drop it")
    if is_idx(path):
        x = open_idx(path)
    elif suffix == ".npy":
        x = open_npy(path)
    elif suffix == ".npz":
        x = open_npz(path, key)
    elif path.name.lower().endswith(TEXT_SUFFIXES):
        x = open_text(path)
    else:
        raise DataError(f"{path}: unsupported extension {suffix or '(none)'!r}; use .npy, .npz, .csv, .txt, "
                        ".csv.gz or an idx file (train-images-idx3-ubyte[.gz])")
    check_array(x, path)
    return x if drop_column is None else without_column(x, drop_column, path)


def without_column(x: np.ndarray, column: int, path: Path) -> np.ndarray:
    """x without one column: a view for the first/last column, else a chunked copy (memmap stays on disk)."""
    if x.ndim != 2:
        raise DataError(f"{path}: --drop-column needs an (N, D) table, got shape {x.shape}")
    d = x.shape[1]
    if not -d <= column < d or d < 2:
        raise DataError(f"{path}: cannot drop column {column} of {d} columns; pick one in [{-d}, {d})")
    column %= d
    if column == 0:
        return x[:, 1:]
    if column == d - 1:
        return x[:, :-1]
    if not isinstance(x, np.memmap):
        return np.delete(x, column, axis=1)
    with tempfile.TemporaryFile() as f:  # mmap keeps its own descriptor; the file is already unlinked
        out = np.memmap(f, dtype=x.dtype, mode="w+", shape=(x.shape[0], d - 1))
    for start in range(0, x.shape[0], COPY_CHUNK_ROWS):
        chunk = np.asarray(x[start : start + COPY_CHUNK_ROWS])  # (B, D)
        out[start : start + len(chunk)] = np.delete(chunk, column, axis=1)
    out.flush()
    return out


# ---------------------------------------------------------------------------------------------- resolving


def resolve_data(
    spec: str, key: str | None = None, drop_column: int | None = None, seed: int = 0
) -> tuple[np.ndarray, str]:
    """A synthetic or bundled set's name or a file/image-folder path -> (array, description of its source)."""
    from entropy_elbo.data.bundled import BUNDLED, load_bundled
    from entropy_elbo.data.synthetic import SYNTHETIC, make_synthetic

    if (spec in SYNTHETIC or spec in BUNDLED) and not Path(spec).exists():
        if key is not None or drop_column is not None:
            raise DataError(f"{spec}: --key and --drop-column apply to files, not named data sets; drop them")
        if spec in BUNDLED:
            x = load_bundled(spec)
            shape = "x".join(str(s) for s in x.shape)
            return x, f"scikit-learn's '{spec}' data ({shape}: {BUNDLED[spec][1]})"
        x = make_synthetic(spec, seed=seed)
        return x, f"synthetic '{spec}' data ({x.shape[0]}x{x.shape[1]}, seed {seed})"
    path = Path(spec)
    if path.is_dir():
        if key is not None or drop_column is not None:
            raise DataError(f"{path}: --key and --drop-column apply to array files, not image folders")
        x = load_image_folder(path)
        return x, f"image folder {path} ({x.shape[0]} images, {x.shape[1]}x{x.shape[2]}x{x.shape[3]})"
    if not path.exists():
        names = ", ".join(sorted(SYNTHETIC) + list(BUNDLED))
        raise DataError(f"{spec}: no such file or folder, and not a named data set ({names})")
    x = open_array(path, key=key, drop_column=drop_column)
    how = "memory-mapped" if isinstance(x, np.memmap) else "in memory"
    extras = f", key {key!r}" if key else ""
    extras += f", column {drop_column} dropped" if drop_column is not None else ""
    shape = "x".join(str(s) for s in x.shape)
    return x, f"file {path} ({shape} {x.dtype}, {how}{extras})"
