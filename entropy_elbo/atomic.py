"""Atomic file writing: a temporary file beside the target, fsync, then one rename, so no reader sees a torn file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError

from entropy_elbo.errors import CheckpointError


def new_file_mode() -> int:
    """0o666 less the umask: the mode `open` gives a new file (mkstemp's temporary files are 0o600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Call write(tmp_path) on a temporary file beside `path`, fsync it, then rename it over `path`."""
    folder = check_writable(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except (OSError, SafetensorError) as err:
        why = getattr(err, "strerror", None) or err
        raise CheckpointError(f"{path}: could not be written ({why}); check the disk space and the path") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_writable(path: Path) -> Path:
    """The folder of `path` after checking that a file can be created there and `path` is not a folder."""
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{path}: {folder} is a file, not a folder; choose another --out")
    if not folder.is_dir():
        raise CheckpointError(f"{path}: folder {folder} does not exist; create it or choose another --out")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; give --out a file name such as {path / 'model.safetensors'}")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise CheckpointError(f"{path}: cannot write in {folder} ({err.strerror}); choose a writable --out") from None
    os.close(fd)
    os.unlink(probe)
    return folder
