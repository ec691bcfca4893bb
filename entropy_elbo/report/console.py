"""The two streams: results on stdout (a failed write is one line), messages and progress on stderr."""

from __future__ import annotations

import contextlib
import json
import os
import sys

from rich.console import Console
from rich.markup import escape

from entropy_elbo.errors import EntropyElboError


class Stdout:
    """sys.stdout (looked up at each write) that turns a failed write (a full disk, a closed pipe, a closed stdout)
    into one line."""

    def write(self, text: str) -> int:
        return self._guard(lambda: self._stream().write(text) + (self._stream().flush() or 0))

    def flush(self) -> None:
        self._guard(lambda: self._stream().flush())

    def isatty(self) -> bool:
        with contextlib.suppress(AttributeError, ValueError, OSError):  # no stdout, or a closed one: not a terminal
            return bool(sys.stdout.isatty())
        return False

    @property
    def encoding(self) -> str:
        return getattr(sys.stdout, "encoding", None) or "utf-8"

    @staticmethod
    def _stream():  # noqa: ANN205
        """sys.stdout, or our error where the process started with it closed (`>&-`: Python sets it to None)."""
        if sys.stdout is None:
            raise EntropyElboError(CLOSED)
        return sys.stdout

    @staticmethod
    def _guard(write):  # noqa: ANN001, ANN205
        try:
            return write()
        except ValueError:  # a file object closed under us: "I/O operation on closed file"
            raise EntropyElboError(CLOSED) from None
        except OSError as error:
            with contextlib.suppress(OSError, ValueError, AttributeError):  # what Python still holds for stdout
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # must not fail again at exit
            raise EntropyElboError(f"cannot write the results to standard output ({error.strerror or error}); "
                                   "free space where it goes, or redirect it elsewhere") from None


CLOSED = ("cannot write the results to standard output (it is closed); redirect it to a file, or to /dev/null "
          "to drop them")
stdout = Stdout()


def out() -> Console:
    """A console on stdout for results, built at each use: importing touches no stream, and COLUMNS is read when
    the table is printed."""
    return Console(file=stdout, soft_wrap=True)


def err() -> Console:
    """A console on stderr (looked up at each write) for messages and progress, built at each use."""
    return Console(stderr=True, soft_wrap=True)


def print_json(data: object) -> None:
    """One JSON object on stdout, nothing else."""
    stdout.write(json.dumps(data, allow_nan=False, default=float) + "\n")


def message(text: str, console: Console | None = None) -> None:
    """Free text for the user, on stderr (or `console`), printed as is: rich markup in it is escaped."""
    (console or err()).print(escape(text), highlight=False)

