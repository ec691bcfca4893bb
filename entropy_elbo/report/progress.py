"""Progress lines on stderr: over long work and over the rows of a stream (epochs: entropy_elbo.progress)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from entropy_elbo.progress import ProgressLine
from entropy_elbo.report.console import err


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
def rows_progress(total: int | None, quiet: bool = False) -> Iterator[object]:
    """A progress bar over the rows of a stream."""
    if quiet:
        yield lambda rows: None
        return
    columns = (TextColumn("rows"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err(), transient=True) as progress:
        task = progress.add_task("stream", total=total)
        yield lambda rows: progress.update(task, completed=rows)

