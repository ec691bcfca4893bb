"""MNIST's idx files (`train-images-idx3-ubyte`, gzipped or not), read with numpy after checking the header.

The format (LeCun's MNIST page): two zero bytes, a type code, the number of dims; then each dim as a big-endian
uint32; then the values, big-endian, row-major. Unsigned-byte images come back as float32 pixels / 255 in
[0, 1] (torchvision's `ToTensor`, which the paper's MNIST runs used); (N, H, W) images as (N, 1, H, W).
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

import numpy as np

from entropy_elbo.errors import DataError
from entropy_elbo.limits import check_inflation, check_memory

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_NAME = re.compile(r"[.-]idx\d-[a-z]+$|\.idx\d?$", re.IGNORECASE)  # train-images-idx3-ubyte, x.idx3-ubyte, x.idx
GZ_ERRORS = (OSError, EOFError, zlib.error)


def is_idx(path: Path) -> bool:
    """Whether a file is named like an idx file (MNIST's train-images-idx3-ubyte[.gz], *.idx[.gz])."""
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    return bool(IDX_NAME.search(name))


def _header(head: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """dtype, dims and header length from the first bytes of an idx file."""
    if head[:2] == b"\x1f\x8b":
        raise DataError(f"{path}: gzip-compressed, but its name does not end in .gz; rename it to {path.name}.gz")
    if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in IDX_TYPES or not 1 <= head[3] <= 4:
        raise DataError(f"{path}: not an idx file (magic bytes {head[:4].hex()}, expected 0000 then a type code "
                        "08/09/0b/0c/0d/0e and 1-4 dims); pass MNIST's unmodified idx file")
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        raise DataError(f"{path}: idx header cut short ({len(head)} bytes, {ndim} dims need {4 + 4 * ndim}); "
                        "download the file again")
    dims = tuple(int(d) for d in np.frombuffer(head, ">u4", count=ndim, offset=4))
    return np.dtype(IDX_TYPES[head[2]]), dims, 4 + 4 * ndim


def _check_dims(dtype: np.dtype, dims: tuple[int, ...], path: Path) -> int:
    """The data's size in bytes, after refusing a labels file, an empty set, and more than memory can hold."""
    if len(dims) == 1:
        raise DataError(f"{path}: an idx1 file holds {dims[0]} labels, not images; pass the images file "
                        "(e.g. train-images-idx3-ubyte.gz)")
    if 0 in dims:
        raise DataError(f"{path}: idx dims {dims} hold no data; pass a non-empty file")
    numel = int(np.prod(dims, dtype=object))
    check_memory(numel * (dtype.itemsize + 4), f"{path}: idx dims {dims}", "check the file", DataError)
    return numel * dtype.itemsize


def open_idx(path: str | Path) -> np.ndarray:
    """An idx file as float32 (N, D) or (N, C, H, W); ubyte pixels scaled to [0, 1] (/ 255)."""
    path = Path(path)
    gzipped = path.name.lower().endswith(".gz")
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
            dtype, dims, offset = _header(f.read(20), path)
            size = _check_dims(dtype, dims, path)
            if gzipped:
                check_inflation(size, path.stat().st_size, f"{path}: idx dims {dims}", "check the file", DataError)
            f.seek(offset)
            raw = f.read(size)
            trailing = len(f.read(1))
    except GZ_ERRORS as e:
        what = "corrupt gzip" if gzipped and not isinstance(e, PermissionError) else "cannot be read"
        raise DataError(f"{path}: {what} ({getattr(e, 'strerror', None) or e}); download the file again") from e
    if len(raw) != size or trailing:
        got = "more" if trailing else f"{len(raw):,}"
        raise DataError(f"{path}: idx dims {dims} of {dtype.name} need {size:,} data bytes, the file holds {got}; "
                        "download the file again")
    x = np.frombuffer(raw, dtype).reshape(dims)
    x = x.reshape(dims[0], 1, *dims[1:]) if len(dims) == 3 else x  # (N, H, W) images -> (N, 1, H, W)
    if dtype == np.dtype(">u1"):
        return x.astype(np.float32) / np.float32(255.0)
    return x.astype(np.float32)
