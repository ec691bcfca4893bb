"""Resource limits: what a file or a flag may ask of this machine before any of it is read or allocated.

Every input is refused in one line, before the work starts, when it is not a regular file (a FIFO or a device
would block or never end) or when what it declares (a tensor's size, an image's pixels, a model's weights, rows
to write) exceeds what the machine has: a fraction of the memory available now (MemAvailable, or
ENTROPY_ELBO_MEMORY_LIMIT bytes when set, for tests and shared machines) or the free disk space.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
from pathlib import Path

from entropy_elbo.errors import EntropyElboError

MEMORY_FRACTION = 0.5  # of the available memory, for one allocation the command cannot stream
INFLATE_RATIO = 100  # real data compresses 1-10 fold (MNIST's idx.gz 4.7, floats 1-3); deflate's ceiling is ~1000
INFLATE_FREE = 100 * 2**20  # this much may always be inflated, whatever the ratio
LIMIT_ENV = "ENTROPY_ELBO_MEMORY_LIMIT"


def available_memory() -> int:
    """Bytes of memory available now: MemAvailable from /proc/meminfo, else free pages (1 GiB if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**30


def memory_budget() -> int:
    """Bytes one allocation may take: ENTROPY_ELBO_MEMORY_LIMIT if set, else half the available memory."""
    given = os.environ.get(LIMIT_ENV)
    if given:
        try:
            value = float(given)
        except ValueError:
            raise EntropyElboError(f"{LIMIT_ENV}={given!r}: not a number of bytes; unset it or give e.g. 2e9") from None
        if not math.isfinite(value):
            raise EntropyElboError(f"{LIMIT_ENV}={given!r}: not a finite number of bytes; unset it (half the "
                                   "available memory) or give e.g. 2e9") from None
        return max(1, int(value))
    return int(MEMORY_FRACTION * available_memory())


def size_text(nbytes: float) -> str:
    """Bytes in words: '1.0 GiB', '512.0 MiB', '300 bytes'."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def check_memory(nbytes: float, what: str, hint: str, error: type[EntropyElboError] = EntropyElboError) -> None:
    """Refuse `what` (a file or flag and the thing it asks for) when it needs more than `memory_budget()`."""
    budget = memory_budget()
    if nbytes > budget:
        raise error(f"{what} needs {size_text(nbytes)} of memory, more than the {size_text(budget)} this machine "
                    f"can spare (half its available memory); {hint}")


def check_inflation(inflated: float, compressed: int, what: str, hint: str,
                    error: type[EntropyElboError] = EntropyElboError, free: int | None = None) -> None:
    """Refuse compressed data that inflates more than INFLATE_RATIO-fold (beyond `free` bytes, INFLATE_FREE unless
    given): only a compression bomb or near-constant data does, and either would take memory far beyond what the
    file suggests."""
    if inflated > max(INFLATE_RATIO * compressed, INFLATE_FREE if free is None else free):
        raise error(f"{what} inflates from {size_text(compressed)} to {size_text(inflated)}, more than "
                    f"{INFLATE_RATIO}-fold, as only a compression bomb or near-constant data does; {hint}")


def check_disk(nbytes: float, folder: Path, what: str, hint: str) -> None:
    """Refuse writing `nbytes` into `folder` when its file system has less free space."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # the write itself will say what is wrong with the folder
    if nbytes > free:
        raise EntropyElboError(f"{what} would write {size_text(nbytes)}, more than the {size_text(free)} free in "
                               f"{folder}; {hint}")


def check_regular(path: Path, what: str, error: type[EntropyElboError] = EntropyElboError,
                  folder_ok: bool = False) -> None:
    """Refuse a path that is not a regular file (or a folder, when allowed) before opening it: a FIFO, socket or
    device, also behind a symbolic link, would block or read without end."""
    try:
        mode = os.stat(path).st_mode  # follows links: /dev/zero behind a link is a character device
    except FileNotFoundError:
        return  # the caller says 'no such file' in its own words
    except OSError as err:
        raise error(f"{path}: cannot be read ({err.strerror or err}); check the path and its permissions") from None
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return
    kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
            "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    link = f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
    raise error(f"{path}: is {kind}{link}, not a regular file; pass {what}")
