"""Progress lines on stderr: over long work and over the rows of a stream (epochs: entropy_elbo.progress)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from entropy_elbo.progress import ProgressLine


@contextmanager
def work_progress(total: float, unit: str, quiet: bool = False) -> Iterator[object]:
    """Progress with an ETA over `total` units of long work (shown only after 2 s): yields tick(units done now)."""
    line = ProgressLine(total, unit, quiet=quiet, delay=2.0, interval=30.0)
    if not line.terminal:  # a log gets a line only from work that lasts the interval (30 s)
        line.delay = line.interval
    done = 0.0

    def tick(units: float) -> None:
        nonlocal done
        done += units
        line.update(done)

    try:
        yield tick
    finally:
        line.close()


@contextmanager
def rows_progress(total: int, quiet: bool = False, interval: float = 30.0) -> Iterator[object]:
    """Progress over the rows of a stream: yields update(rows done so far). A redrawn line on a terminal; in a log
    or a pipe, a line every `interval` seconds with the elapsed time and the ETA (work under 2 s shows nothing)."""
    line = ProgressLine(total, "rows", quiet=quiet, delay=2.0, interval=interval)
    try:
        yield lambda rows: line.update(rows)
    finally:
        line.close()
