"""Progress lines on stderr: over epochs, over long work, over the rows of a stream."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from entropy_elbo.progress import ProgressLine
from entropy_elbo.report.console import err
from entropy_elbo.report.figures import fmt


@contextmanager
def epoch_progress(total: int, quiet: bool = False, done: int = 0) -> Iterator[object]:
    """Progress over epochs after the `done` a resumed run has behind it: count, bar and ETA, then the sampled
    ELBO, the relative gap, the active latents (mean encoder entropy <= 1.0 nat, eq. 24) and the entropy ELBO,
    dropped in reverse order to fit the terminal."""
    line = ProgressLine(total, "epoch", quiet=quiet, done=done)

    def update(row: dict[str, object]) -> None:
        figures = [f"ELBO {row['elbo']:.4f} nats/point"]
        gap = row.get("relative_gap")
        if gap is not None:
            figures.append(f"gap {100 * gap:+.2f}%")
        if row.get("active_latents") is not None:
            figures.append(f"active latents {row['active_latents']}/{len(row.get('latent_entropies') or ()) or '?'}")
        figures.append(f"entropy ELBO {fmt(row.get('entropy_elbo'))}")
        line.update(float(row["epoch"]), figures)

    try:
        yield update
    finally:
        line.close()


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


def counted(batches: Iterable, tick: object) -> Iterator:
    """The batches, telling `tick` each one's rows as it passes."""
    for batch in batches:
        yield batch
        tick(len(batch))


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

