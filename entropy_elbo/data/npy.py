"""numpy's own files: a .npy memory-mapped after its header is checked, one array of a .npz after its member's
header and inflated size are."""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from pathlib import Path
from tokenize import TokenError
from typing import BinaryIO

import numpy as np

from entropy_elbo.data.checks import check_dtype, check_shape
from entropy_elbo.errors import DataError
from entropy_elbo.limits import (
    check_inflation,
    check_memory,
    size_text,
)

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


def _read_head(path: Path, n: int) -> bytes:
    """The first n bytes of a file, or a DataError saying it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e}); check its permissions") from e


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset from a .npy header, read without touching the data."""
    head = _read_head(path, 6)
    if not head:
        raise DataError(f"{path}: the file is empty; re-save it with numpy.save")
    if head != NPY_MAGIC:
        hint = "it is a zip; rename it to .npz" if head[:4] == ZIP_MAGIC else "save it with numpy.save"
        raise DataError(f"{path}: not a .npy file (bad magic bytes {head!r}); {hint}")
    try:
        with open(path, "rb") as f:
            shape, dtype = _read_npy_header(f, path)
            return shape, dtype, f.tell()
    except (ValueError, OSError, SyntaxError, TokenError, TypeError, RecursionError) as e:
        raise DataError(f"{path}: corrupt .npy header ({e}); re-save it with numpy.save") from e


def _read_npy_header(f: BinaryIO, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the .npy whose magic bytes start at f's position; f is left at its data."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    version = np.lib.format.read_magic(f)
    if version not in readers:
        raise DataError(f"{path}: .npy format {version} is unsupported; re-save it with numpy.save")
    shape, _, dtype = readers[version](f)
    return shape, dtype


def open_npy(path: Path) -> np.ndarray:
    """A .npy opened memory-mapped read-only, after its header, dtype and size are checked."""
    shape, dtype, offset = _npy_header(path)
    check_dtype(dtype, path)
    check_shape(shape, path)
    expected = offset + math.prod(shape) * dtype.itemsize  # Python ints: a header's shape cannot overflow them
    actual = path.stat().st_size
    if actual < expected:
        raise DataError(f"{path}: truncated .npy ({actual} bytes, header {shape} {dtype} needs {expected}); "
                        "copy or save it again")
    return np.load(path, mmap_mode="r", allow_pickle=False)


# what zipfile, zlib and numpy's header parser raise on damaged archives (flipped flags, bad CRC, bad header)
NPZ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError,
              RuntimeError, zlib.error, struct.error, SyntaxError, TokenError, TypeError, RecursionError)


def open_npz(path: Path, key: str | None) -> np.ndarray:
    """One array of a .npz archive, chosen by key (or the only one)."""
    if _read_head(path, 4) != ZIP_MAGIC:
        raise DataError(f"{path}: not a .npz (zip) archive; save it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            if not keys:
                raise DataError(f"{path}: the .npz holds no arrays")
            if key is None and len(keys) > 1:
                raise DataError(f"{path}: holds arrays {keys}; pass --key to pick one")
            key = keys[0] if key is None else key
            if key not in keys:
                raise DataError(f"{path}: no array {key!r}; keys are {keys}, pass one with --key")
            _check_npz_member(npz.zip.getinfo(f"{key}.npy") if f"{key}.npy" in npz.zip.namelist() else None, npz,
                              path, key)
            x = npz[key]
    except NPZ_ERRORS as e:
        if "pickle" in str(e):
            raise DataError(f"{path}: array {key!r} holds Python objects (pickle is never loaded); "
                            "save a numeric array") from e
        raise DataError(f"{path}: corrupt .npz ({e}); save it again with numpy.savez") from e
    if not isinstance(x, np.ndarray):  # a zip member that is not a .npy comes back as raw bytes
        raise DataError(f"{path}: member {key!r} is not a numpy array; save the archive with numpy.savez")
    return x


def _check_npz_member(info: zipfile.ZipInfo | None, npz: np.lib.npyio.NpzFile, path: Path, key: str) -> None:
    """Before inflating a member: its .npy header must fit its size, and what it inflates to must fit in memory."""
    if info is None:
        return  # a member without the .npy suffix: numpy hands it out as raw bytes, the caller refuses it
    with npz.zip.open(info) as member:
        if member.read(len(NPY_MAGIC)) != NPY_MAGIC:
            return  # numpy hands such a member out as raw bytes; the caller refuses it
        member.seek(0)
        shape, dtype = _read_npy_header(member, path)  # header only, no data
    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if declared > info.file_size:
        raise DataError(f"{path}: member {key!r} declares {shape} {dtype} ({size_text(declared)}) but holds "
                        f"{size_text(info.file_size)}; the archive is damaged, save it again with numpy.savez")
    if info.compress_type != zipfile.ZIP_STORED:
        check_inflation(info.file_size, info.compress_size, f"{path}: member {key!r}",
                        "save real data with numpy.savez (uncompressed) or as .npy", DataError)
    check_memory(info.file_size, f"{path}: member {key!r}", "save it as .npy, which is memory-mapped", DataError)
