"""Atomic file writing: a temporary file beside the target, fsync, then one rename, so no reader sees a torn file."""

from __future__ import annotations

import os
import stat
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


def atomic_write(path: Path, write: Callable[[str], object], flag: str = "--out") -> None:
    """Call write(tmp_path) on a temporary file beside `path`, fsync it, then rename it over `path`; errors name
    `flag`, the option that chose the path."""
    folder = check_writable(path, flag)
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
        raise CheckpointError(f"{flag} {path}: could not be written ({why}); check the disk space and the path"
                              ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_writable(path: Path, flag: str = "--out") -> Path:
    """The folder of `path` after checking that a file can be created there and `path` is not a folder or another
    non-file (a FIFO, a device, a socket: an atomic write would replace it, a plain one would block or tear)."""
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{flag} {path}: {folder} is a file, not a folder; choose another {flag}")
    if not folder.is_dir():
        raise CheckpointError(f"{flag} {path}: folder {folder} does not exist; create it or choose another {flag}")
    if path.is_dir():
        example = path / ("model.safetensors" if flag == "--out" else "figure.png")
        raise CheckpointError(f"{flag} {path}: is a folder; give {flag} a file name such as {example}")
    if path.exists() and not path.is_file():
        raise CheckpointError(f"{flag} {path}: is {special_kind(path)}, not a regular file; give {flag} a file path")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise CheckpointError(f"{flag} {path}: cannot write in {folder} ({err.strerror}); choose a writable "
                              f"{flag}") from None
    os.close(fd)
    os.unlink(probe)
    return folder


def special_kind(path: Path) -> str:
    """What a path that is neither file nor folder is, in words."""
    mode = path.stat().st_mode
    kinds = [(stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    return next((word for test, word in kinds if test(mode)), "not a regular file")


def figure_format(path: Path, flag: str = "--plot") -> str:
    """The format a figure file's extension asks for, refused unless matplotlib can write it (or when matplotlib
    is missing: it says so)."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise CheckpointError(f"{flag} needs matplotlib: pip install 'entropy-elbo[plot]'") from None
    kinds = FigureCanvasBase.get_supported_filetypes()
    fmt = path.suffix[1:].lower()
    if fmt not in kinds:
        raise CheckpointError(f"{flag} {path}: cannot draw a figure as {path.suffix or '(no extension)'!r}; end the "
                              f"name in one of {', '.join('.' + k for k in sorted(kinds))}")
    return fmt


def save_figure(fig: object, path: str | Path, flag: str = "--plot", dpi: int = 120) -> Path:
    """A matplotlib figure written atomically (so two writers never leave a torn file); its extension picks the
    format, one of those matplotlib can write."""
    path = Path(path)
    fmt = figure_format(path, flag)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=fmt), flag)  # type: ignore[attr-defined]
    return path
