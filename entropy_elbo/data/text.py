"""Comma-separated tables (.csv/.txt, or gzipped as UCI ships them), read as float32 with one header line skipped."""

from __future__ import annotations

import gzip
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from entropy_elbo.data.idx import GZ_ERRORS
from entropy_elbo.errors import DataError
from entropy_elbo.limits import (
    check_inflation,
    check_memory,
    size_text,
)

TEXT_SUFFIXES = (".csv", ".txt", ".csv.gz", ".txt.gz")  # gzipped tables as UCI ships them (SUSY.csv.gz)


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


def open_text(path: Path) -> np.ndarray:
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
