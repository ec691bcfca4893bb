"""Progress on stderr: one line redrawn in a terminal, fitted to its width; plain lines every so often elsewhere.

A line is built from figures in order of importance: the count done and the ETA always come first, the
least important figures are dropped first when the terminal is narrow. When stderr is not a terminal (a CI
log, `nohup`) a plain line is printed every `interval` seconds and at the end.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

BAR = 12  # characters of the bar


def clock(seconds: float) -> str:
    """0:03:07 for 187 seconds."""
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def fixed(value: float | None, digits: int = 4) -> str:
    """Fixed point, or scientific where fixed point would print a non-zero value as 0.0000; n/a for None."""
    if value is None:
        return "n/a"
    if value != 0 and abs(value) < 0.5 * 10.0 ** -digits:
        return f"{value:.{max(1, digits - 2)}e}"
    return f"{value:.{digits}f}"


def message(text: str) -> None:
    """Free text for the user, on stderr as is (the library's default; the CLI passes its own)."""
    print(text, file=sys.stderr, flush=True)


def fit_line(head: str, figures: Sequence[str], width: int) -> str:
    """`head` and then as many of `figures` (most important first) as fit in `width` characters, in order."""
    kept = list(figures)
    while kept and len("  ".join([head, *kept])) > width:
        kept.pop()
    return "  ".join([head, *kept])[:width]


class ProgressLine:
    """Progress of `total` units of `unit`; `update(done, figures)` with the figures most important first."""

    def __init__(self, total: float, unit: str, *, done: float = 0, quiet: bool = False, stream: TextIO | None = None,
                 interval: float = 30.0, terminal: bool | None = None, width: int | None = None,
                 delay: float = 0.0) -> None:
        self.total, self.unit, self.quiet, self.delay = float(total), unit, quiet, delay
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.width, self.interval = width, interval
        self.start, self.first = time.monotonic(), float(done)  # a resumed run starts midway: rate from here
        self.last_print = -float("inf")
        self.drawn = False

    def eta(self, done: float, now: float) -> float | None:
        """Seconds left at the rate seen so far, or None before any unit is done."""
        if done <= self.first:
            return None
        return (self.total - done) * (now - self.start) / (done - self.first)

    def line(self, done: float, figures: Sequence[str], now: float, width: int) -> str:
        """The progress line: count, times, then the figures, most important first, as many as fit."""
        head = f"{self.unit} {done:,.0f}/{self.total:,.0f}"
        eta = self.eta(done, now)
        timing = f"ETA {'?' if eta is None else clock(eta)}"
        if done >= self.total:
            timing = f"done in {clock(now - self.start)}"
        if not self.terminal:  # a log: the elapsed time too
            timing = timing if done >= self.total else f"{clock(now - self.start)} elapsed, {timing}"
            return fit_line(head, [timing, *figures], width)
        filled = int(BAR * min(1.0, done / self.total)) if self.total else BAR
        return fit_line(f"{head} {'#' * filled}{'-' * (BAR - filled)}", [timing, *figures], width)

    def update(self, done: float, figures: Sequence[str] = ()) -> None:
        """Redraw the line (terminal), or print it if `interval` seconds passed or the work is done (elsewhere)."""
        if self.quiet:
            return
        now = time.monotonic()
        if now - self.start < self.delay and not self.drawn and self.last_print < self.start:
            return  # work shorter than `delay` seconds shows nothing
        if self.terminal:
            self._draw(done, figures, now)
        elif now - self.last_print >= self.interval or done >= self.total:
            self._show(done, figures, now)

    def _width(self) -> int:
        return self.width or shutil.get_terminal_size((80, 24)).columns

    def _draw(self, done: float, figures: Sequence[str], now: float) -> None:
        width = self._width() - 1  # the last column would wrap in some terminals
        self.stream.write("\r" + self.line(done, figures, now, width).ljust(width))
        self.stream.flush()
        self.drawn = True

    def _show(self, done: float, figures: Sequence[str], now: float) -> None:
        self.stream.write(self.line(done, figures, now, 10_000) + "\n")
        self.stream.flush()
        self.last_print = now

    def close(self) -> None:
        """End the redrawn line (the last state stays visible)."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


@contextmanager
def epoch_progress(total: int, quiet: bool = False, done: int = 0) -> Iterator[Callable[[dict[str, object]], None]]:
    """Progress over epochs after the `done` a resumed run has behind it: count, bar and ETA, then the sampled
    ELBO, the relative gap, the active latents (mean encoder entropy <= 1.0 nat, eq. 24) and the entropy ELBO,
    dropped in reverse order to fit the terminal. Yields update(the epoch's log row)."""
    line = ProgressLine(total, "epoch", quiet=quiet, done=done)

    def update(row: dict[str, object]) -> None:
        figures = [f"ELBO {row['mc_elbo']:.4f} nats/point"]
        gap = row.get("relative_gap")
        if gap is not None:
            figures.append(f"gap {100 * gap:+.2f}%")
        if row.get("active_latents") is not None:
            figures.append(f"active latents {row['active_latents']}/{len(row.get('latent_entropies') or ()) or '?'}")
        figures.append(f"entropy ELBO {fixed(row.get('entropy_elbo'))}")
        line.update(float(row["epoch"]), figures)

    try:
        yield update
    finally:
        line.close()
