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
    """sys.stdout (looked up at each write) that turns a failed write (a full disk, a closed pipe) into one line."""

    def write(self, text: str) -> int:
        return self._guard(lambda: sys.stdout.write(text) + (sys.stdout.flush() or 0))

    def flush(self) -> None:
        self._guard(sys.stdout.flush)

    def isatty(self) -> bool:
        return sys.stdout.isatty()

    @property
    def encoding(self) -> str:
        return getattr(sys.stdout, "encoding", None) or "utf-8"

    @staticmethod
    def _guard(write):  # noqa: ANN001, ANN205
        try:
            return write()
        except OSError as error:
            with contextlib.suppress(OSError, ValueError, AttributeError):  # what Python still holds for stdout
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # must not fail again at exit
            raise EntropyElboError(f"cannot write the results to standard output ({error.strerror or error}); "
                                   "free space where it goes, or redirect it elsewhere") from None


stdout = Stdout()
out = Console(file=stdout, soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def print_json(data: object) -> None:
    """One JSON object on stdout, nothing else."""
    stdout.write(json.dumps(data, allow_nan=False, default=float) + "\n")


def message(text: str, console: Console | None = None) -> None:
    """Free text for the user, on stderr (or `console`), printed as is: rich markup in it is escaped."""
    (console or err).print(escape(text), highlight=False)

