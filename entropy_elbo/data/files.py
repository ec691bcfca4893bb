"""Data files: open .npy/.npz/.csv tables and image folders, stream float32 batches, scale, split, save.

Design: `open_array` always returns a numpy array. A `.npy` comes back memory-mapped (`np.memmap`), so
nothing is read until `iter_batches` slices a chunk; dropping its first or last column is a zero-copy
view of the memmap, and dropping an interior column copies the table chunk by chunk into an anonymous
temporary file that is memory-mapped in turn (bounded RAM, one pass). `.npz` and text files are read
into memory (text as float32, the precision every batch has anyway).
"""

from __future__ import annotations

import contextlib
import gzip
import math
import mmap
import os
import re
import struct
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from tokenize import TokenError
from types import ModuleType
from typing import BinaryIO, Literal, TextIO

import numpy as np

from entropy_elbo.atomic import new_file_mode
from entropy_elbo.data.idx import GZ_ERRORS, is_idx, open_idx
from entropy_elbo.errors import DataError
from entropy_elbo.limits import (
    check_disk,
    check_inflation,
    check_memory,
    check_regular,
    memory_budget,
    size_text,
)

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TEXT_SUFFIXES = (".csv", ".txt", ".csv.gz", ".txt.gz")  # gzipped tables as UCI ships them (SUSY.csv.gz)
COPY_CHUNK_ROWS = 65_536
RELEASE_BYTES = 64 * 2**20  # a memory-mapped file's pages are dropped from RSS after this much is read


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
        x = _open_npy(path)
    elif suffix == ".npz":
        x = _open_npz(path, key)
    elif path.name.lower().endswith(TEXT_SUFFIXES):
        x = _open_text(path)
    else:
        raise DataError(f"{path}: unsupported extension {suffix or '(none)'!r}; use .npy, .npz, .csv, .txt, "
                        ".csv.gz or an idx file (train-images-idx3-ubyte[.gz])")
    _check_array(x, path)
    return x if drop_column is None else _drop_column(x, drop_column, path)


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


def _open_npy(path: Path) -> np.ndarray:
    """A .npy opened memory-mapped read-only, after its header, dtype and size are checked."""
    shape, dtype, offset = _npy_header(path)
    _check_dtype(dtype, path)
    _check_shape(shape, path)
    expected = offset + math.prod(shape) * dtype.itemsize  # Python ints: a header's shape cannot overflow them
    actual = path.stat().st_size
    if actual < expected:
        raise DataError(f"{path}: truncated .npy ({actual} bytes, header {shape} {dtype} needs {expected}); "
                        "copy or save it again")
    return np.load(path, mmap_mode="r", allow_pickle=False)


# what zipfile, zlib and numpy's header parser raise on damaged archives (flipped flags, bad CRC, bad header)
NPZ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError,
              RuntimeError, zlib.error, struct.error, SyntaxError, TokenError, TypeError, RecursionError)


def _open_npz(path: Path, key: str | None) -> np.ndarray:
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


def _open_text_file(path: Path):  # noqa: ANN202
    """A text file opened for reading, through gzip when its name ends in .gz."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


def _first_line_is_header(path: Path) -> bool:
    """Whether the first line of a comma-separated file is a header: it has names and none of them is a number.

    An empty cell says nothing either way, so a data row with a missing value is not taken for a header (it is
    refused by the reader, naming its line and column).
    """
    with _open_text_file(path) as f:
        cells = [c.strip() for c in f.readline().strip().split(",")]
    names = [c for c in cells if c]
    return bool(names) and not any(_is_number(c) for c in names)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _open_text(path: Path) -> np.ndarray:
    """A comma-separated numeric table as float32 (N, D), skipping one header line if present."""
    size = path.stat().st_size
    check_memory(2 * size, f"{path}: this {size_text(size)} text table", "save it as .npy, which is memory-mapped",
                 DataError)  # its float32 table takes at most twice the text's bytes (a digit and a comma each)
    try:
        skip = 1 if _first_line_is_header(path) else 0
        with warnings.catch_warnings(), _open_text_file(path) as f:  # an empty table: our own 0-rows error below
            warnings.simplefilter("ignore", UserWarning)
            lines = _bounded(f, path, size) if path.name.lower().endswith(".gz") else f
            x = np.loadtxt(lines, np.float32, delimiter=",", skiprows=skip, ndmin=2)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text file (not UTF-8); pass a comma-separated table") from e
    except ValueError as e:
        raise DataError(f"{path}: not a numeric comma-separated table: {_text_error(e, skip)}; fix it") from e
    except GZ_ERRORS as e:
        if path.name.lower().endswith(".gz") and not isinstance(e, PermissionError):
            raise DataError(f"{path}: corrupt gzip ({e}); download or compress the file again") from e
        raise DataError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or e}); check its permissions") from e
    if len(x) == 0:
        what = "holds only a header line" if skip else "is empty"
        raise DataError(f"{path}: the file {what}, so the table has 0 rows; pass a table with at least one row")
    return x


TEXT_CHECK = 8 * 2**20  # a gzipped text's inflation is checked after every 8 MiB of its lines


def _bounded(f: TextIO, path: Path, compressed: int) -> Iterator[str]:
    """The lines of a gzipped text, refused as soon as they inflate more than INFLATE_RATIO-fold from the
    compressed bytes read so far (the gzip trailer cannot be trusted to say how large it inflates), or when their
    float32 table would not fit in memory."""
    raw = getattr(getattr(f, "buffer", None), "fileobj", None)  # the compressed file under gzip's reader
    total, check_at = 0, TEXT_CHECK
    for line in f:
        total += len(line)
        if total > check_at:
            read = raw.tell() if raw is not None else compressed
            check_inflation(total, read, f"{path}: the gzipped text read so far", "save the table as .npy", DataError,
                            free=TEXT_CHECK)
            check_memory(2 * total, f"{path}: its text table", "save it as .npy, which is memory-mapped", DataError)
            check_at += TEXT_CHECK
        yield line


def _text_error(e: ValueError, skip: int) -> str:
    """numpy's loadtxt error with its row numbers turned into 1-based file lines and 0-based columns."""
    msg = str(e).split(";")[0].rstrip(".")
    empty = re.search(r"could not convert string '' to \w+ at row (\d+), column (\d+)", msg)
    if empty:
        return f"empty cell at line {int(empty[1]) + skip + 1}, column {int(empty[2]) - 1}"
    bad_value = re.search(r"(could not convert string .*) at row (\d+), column (\d+)", msg)
    if bad_value:
        return f"{bad_value[1]} at line {int(bad_value[2]) + skip + 1}, column {int(bad_value[3]) - 1}"
    ragged = re.search(r"(the number of columns changed from \d+ to \d+) at row (\d+)", msg)
    if ragged:
        return f"{ragged[1]} at line {int(ragged[2]) + skip}"
    return msg


def _check_dtype(dtype: np.dtype, path: Path) -> None:
    """Refuse dtypes that are not real numbers (object, complex, strings, records, dates)."""
    if dtype.kind not in "fiub" or dtype.fields is not None:
        raise DataError(f"{path}: dtype {dtype} is not real numeric; save the data as float32")


def _check_shape(shape: tuple[int, ...], path: Path) -> None:
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


def _check_array(x: np.ndarray, path: Path) -> None:
    """Dtype and shape checks for any opened array."""
    _check_dtype(x.dtype, path)
    _check_shape(x.shape, path)


def _drop_column(x: np.ndarray, column: int, path: Path) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------- batches


def _raw_chunks(
    x: np.ndarray, batch_size: int, indices: np.ndarray | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, chunk) pairs of at most batch_size rows in their stored dtype, in `indices` order if given."""
    if batch_size <= 0:
        raise DataError(f"batch_size must be a positive number of rows, got {batch_size}")
    if indices is None:
        for start in range(0, len(x), batch_size):
            stop = min(start + batch_size, len(x))
            yield np.arange(start, stop), np.asarray(x[start:stop])
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
        chunk[order] = x[rows[order]]  # sorted reads are sequential on a memmap
        yield rows, chunk


def magnitude_limit(row_numel: int) -> float:
    """The largest |x| whose square, summed over a row of `row_numel` values, stays finite in float32.

    Every Gaussian log-density of the estimators sums (x - mu)^2 over a row; beyond this they overflow (or, in
    `collapse`, the encoder's outputs grow without meaning), so such data is refused wherever it is read.
    """
    return float(np.sqrt(np.finfo(np.float32).max / max(1, row_numel)))


def _check_finite(chunk: np.ndarray, rows: np.ndarray, source: str, raw: np.ndarray | None = None) -> None:
    """Raise a DataError naming the first row and column holding NaN, Inf or a value too large to use."""
    limit = magnitude_limit(int(np.prod(chunk.shape[1:])))
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
    for rows, raw in _raw_chunks(x, batch_size, indices):
        with np.errstate(over="ignore"):
            chunk = np.ascontiguousarray(raw, dtype=np.float32)  # (B, ...)
        if not chunk.flags.writeable:  # a read-only memmap slice: torch warns on those, so hand out a copy
            chunk = chunk.copy()
        _check_finite(chunk, rows, source, raw)
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


# ---------------------------------------------------------------------------------------------- scaling


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
    for rows, raw in _raw_chunks(x, batch_size, indices):
        chunk = raw.reshape(len(raw), -1).astype(np.float64)  # (B, F)
        _check_finite(chunk, rows, source)
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


# ---------------------------------------------------------------------------------------------- splitting


def split_indices(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random partition of range(n) into (train, heldout), each sorted for sequential reads."""
    if n < 1:
        raise DataError(f"cannot split {n} rows; pass a non-empty data set")
    if not 0.0 <= holdout < 1.0:
        raise DataError(f"holdout must lie in [0, 1), got {holdout}")
    n_held = min(int(round(n * holdout)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


# ---------------------------------------------------------------------------------------------- images


def _image_to_array(path: Path, image_size: int, image_module: ModuleType, crop: int | None = None) -> np.ndarray:
    """One image as float32 (3, S, S) in [0, 1]: RGB; the centre crop x crop square resized to S (CelebA: 148, as
    the paper's code), or with no crop the shorter side resized to S and the centre S x S kept."""
    bound = image_module.MAX_IMAGE_PIXELS  # PIL's own bomb limit becomes ours, said in one line with the size
    try:
        image_module.MAX_IMAGE_PIXELS = None
        img = image_module.open(path)
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: unreadable image ({e}); remove or replace it") from e
    finally:
        image_module.MAX_IMAGE_PIXELS = bound
    with img:
        w, h = img.size  # from the header: nothing is decoded yet
        if crop is not None and min(w, h) < crop:
            raise DataError(f"{path}: the image is {w}x{h} pixels, smaller than the centre crop of {crop}; "
                            "pass a smaller --crop or remove the image")
        factor = image_size / min(w, h)
        size = ((image_size, image_size) if crop is not None else
                (max(image_size, round(w * factor)), max(image_size, round(h * factor))))
        limit = min(bound or w * h, memory_budget() // 16)  # RGB(A) decoded, then resized
        for what, (a, b) in (("image", (w, h)), ("resized image", size)):
            if a * b > limit:
                raise DataError(f"{path}: a {a}x{b} {what} ({a * b:,} pixels) is more than the {limit:,} pixels "
                                "this command decodes at once; shrink or crop the image first")
        try:
            img = img.convert("RGB")
            if crop is not None:
                left, top = round((w - crop) / 2), round((h - crop) / 2)
                img = img.crop((left, top, left + crop, top + crop)).resize(size, image_module.Resampling.BICUBIC)
            else:
                img = img.resize(size, image_module.Resampling.BICUBIC)
                left, top = (size[0] - image_size) // 2, (size[1] - image_size) // 2
                img = img.crop((left, top, left + image_size, top + image_size))
            pixels = np.asarray(img, dtype=np.float32) / 255.0  # (S, S, 3)
        except (OSError, ValueError, SyntaxError) as e:
            raise DataError(f"{path}: unreadable image ({e}); remove or replace it") from e
    return np.clip(pixels, 0.0, 1.0).transpose(2, 0, 1)


def load_image_folder(path: str | Path, image_size: int = 64, crop: int | None = None) -> np.ndarray:
    """All png/jpg/jpeg/bmp images of a folder as float32 (N, 3, S, S) in [0, 1] (CelebA, App. D.4), each
    centre-cropped to crop x crop pixels first when crop is given."""
    path = Path(path)
    try:
        from PIL import Image
    except ImportError as e:
        raise DataError(f"{path}: reading images needs Pillow; pip install 'entropy-elbo[images]'") from e
    if not path.is_dir():
        raise DataError(f"{path}: not a folder; pass a folder of png/jpg/jpeg/bmp images")
    if image_size < 1:
        raise DataError(f"image_size must be a positive number of pixels, got {image_size}")
    if crop is not None and crop < 1:
        raise DataError(f"--crop must be a positive number of pixels, got {crop}")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{path}: no .png/.jpg/.jpeg/.bmp images in this folder")
    check_memory(4 * 3 * image_size**2 * (len(files) + 4), f"--image-size {image_size}: {len(files)} images of "
                 f"3x{image_size}x{image_size} float32", "pass a smaller --image-size", DataError)
    out = np.empty((len(files), 3, image_size, image_size), dtype=np.float32)  # (N, 3, S, S)
    for i, f in enumerate(files):
        out[i] = _image_to_array(f, image_size, Image, crop)
    return out


# ---------------------------------------------------------------------------------------------- saving


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
