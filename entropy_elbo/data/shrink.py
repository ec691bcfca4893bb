"""A memory-mapped file that another program truncates while we read it: touching a page past its new end is a
SIGBUS that kills the process without a word. So before each chunk is read, the file's size is checked against the
size the map needs (one stat per chunk), and a shrunk file is one line naming it; the window left is the
microseconds between that stat and the copy.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable

import numpy as np

from entropy_elbo.errors import DataError


def mapped_bytes(x: np.ndarray) -> tuple[str, int] | None:
    """(file, bytes it must hold) for an array backed by a memory map of a file, else None."""
    base: object = x
    while isinstance(base, np.ndarray) and not isinstance(getattr(base, "_mmap", None), mmap.mmap):
        base = base.base
    mm = getattr(base, "_mmap", None) if isinstance(base, np.ndarray) else None
    filename = getattr(x, "filename", None) or getattr(base, "filename", None)
    if not isinstance(mm, mmap.mmap) or not filename or mm.closed:
        return None
    offset = int(getattr(base, "offset", 0) or 0)
    start = offset - offset % mmap.ALLOCATIONGRANULARITY  # where np.memmap starts its map
    return str(filename), start + len(mm)


def size_guard(x: np.ndarray) -> Callable[[], None]:
    """A check to call before each chunk of `x` is read: a DataError if its file shrank below what is mapped."""
    mapped = mapped_bytes(x)
    if mapped is None:
        return lambda: None
    filename, needed = mapped

    def check() -> None:
        try:
            size = os.stat(filename).st_size
        except OSError as err:
            raise DataError(f"{filename}: could not be checked while reading it ({err.strerror}); it was removed "
                            "or moved, restore it and run again") from None
        if size < needed:
            raise DataError(f"{filename}: the file shrank to {size} bytes while it was being read (it held {needed}); "
                            "another program truncated or rewrote it, let that finish and run again") from None

    return check
