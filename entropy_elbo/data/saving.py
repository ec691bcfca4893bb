"""Arrays saved atomically to .npy or .csv, from row chunks in bounded memory, after the disk is checked for room."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from entropy_elbo.atomic import new_file_mode
from entropy_elbo.errors import DataError
from entropy_elbo.limits import (
    check_disk,
)

CSV_BYTES_PER_VALUE = 16  # "%.9g" and a comma: at most 15 characters and the separator


def save_array(x: np.ndarray, out: str | Path) -> None:
    """Write x to .npy (or .csv) atomically: a temp file in the same folder, fsync, then os.replace."""
    x = np.ascontiguousarray(x)
    save_chunks([x], x.shape, x.dtype, out)


def save_chunks(chunks: Iterable[np.ndarray], shape: tuple[int, ...], dtype: np.dtype | type, out: str | Path,
                what: str | None = None) -> None:
    """Write an array of `shape` arriving as row chunks to .npy (or .csv) atomically, in memory bounded by a
    chunk, after checking that the disk has room for it (`what` names the request in that error)."""
    out, dtype = Path(out), np.dtype(dtype)
    suffix = out.suffix.lower()
    if suffix not in (".npy", ".csv"):
        raise DataError(f"{out}: cannot save as {suffix or '(no extension)'!r}; use .npy or .csv")
    folder = out.parent if str(out.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{out}: {folder} is a file, not a folder; choose another --out")
    if not folder.is_dir():
        raise DataError(f"{out}: folder {folder} does not exist; create it first")
    if suffix == ".csv" and len(shape) != 2:
        raise DataError(f"{out}: .csv needs an (N, D) table, got shape {tuple(shape)}; save as .npy")
    values = int(np.prod(shape, dtype=np.float64))
    check_disk(values * (dtype.itemsize if suffix == ".npy" else CSV_BYTES_PER_VALUE), folder,
               what or f"{out}: shape {tuple(shape)}", "write fewer rows or to another folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as e:
        raise DataError(f"{out}: folder {folder} is not writable ({e.strerror or e})") from e
    try:
        with os.fdopen(fd, "wb") as f:
            if suffix == ".npy":  # the header np.save writes, then the rows in C order
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
                np.lib.format.write_array_header_1_0(f, header)
            rows = 0
            for chunk in chunks:
                chunk = np.ascontiguousarray(chunk, dtype=dtype)
                if suffix == ".npy":
                    f.write(chunk.data)
                else:
                    np.savetxt(f, chunk, delimiter=",", fmt="%.9g")
                rows += len(chunk)
            if rows != shape[0]:
                raise DataError(f"{out}: got {rows} rows for an array of shape {tuple(shape)}; nothing was written")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, out)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(f"{out}: could not be written ({e.strerror or e}); check space and rights") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
