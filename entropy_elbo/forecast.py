"""How long a Monte Carlo pass will take, said before it starts: one small batch is timed and scaled.

The Monte Carlo ELBO and the IWAE bound cost one decoder pass per sample and row, so their time grows linearly
in rows x samples, on top of a fixed cost per call; the slope between two probes of PROBE_ROWS rows (PROBE_SAMPLES
and 4 x PROBE_SAMPLES samples, after a warm-up) gives the rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from entropy_elbo.elbo import estimate
from entropy_elbo.models.protocol import GaussianVAE
from entropy_elbo.montecarlo import iwae_bound

PROBE_ROWS, PROBE_SAMPLES = 128, 256  # timed at 256 and 1024 samples
SAY_AFTER_S = 30.0  # forecasts shorter than this are not worth a line
MIN_WORK = 100 * PROBE_ROWS * 4 * PROBE_SAMPLES  # rows x samples below this are not worth a probe (~1% of it)


def seconds_per_draw(run: Callable[[list[np.ndarray], int], object], batch: np.ndarray, samples: int) -> float:
    """Seconds per (row x sample) of `run(batches, samples)` on `batch`: the slope between `samples` and 4 x
    `samples` after a warm-up, so that each call's fixed cost (the encoder pass, the summary) is left out."""
    run([batch], 1)  # first calls pay for allocation and kernels' set-up

    def timed(k: int) -> float:
        start = time.perf_counter()
        run([batch], k)
        return time.perf_counter() - start

    few, many = timed(samples), timed(4 * samples)
    slope = max(many - few, 0.25 * many)  # timing noise can hide the slope; never below a quarter of the total
    return slope / (len(batch) * 3 * samples)


def mc_forecast(model: GaussianVAE, x: np.ndarray, *, samples: int, iwae: int,
                device: torch.device | str) -> float:
    """Forecast seconds of the Monte Carlo ELBO with `samples` and the IWAE bound with `iwae` samples per row,
    over all rows of x."""
    from entropy_elbo.data import iter_batches

    batch = next(iter_batches(x, PROBE_ROWS))
    gen = torch.Generator(device=device).manual_seed(0)
    total = 0.0
    for fn, k in ((estimate, samples), (iwae_bound, iwae)):
        if k > 0:
            rate = seconds_per_draw(lambda b, s, fn=fn: fn(model, b, samples=s, generator=gen, device=device), batch,
                                    max(1, min(k // 4, PROBE_SAMPLES)))
            total += rate * len(x) * k
    return total


def forecast_message(model: GaussianVAE, x: np.ndarray, *, samples: int, iwae: int,
                     device: torch.device | str) -> str | None:
    """A line saying how long the pass will take, or None when it is short (or too small to be worth a probe)."""
    if len(x) * (samples + iwae) < MIN_WORK:
        return None
    seconds = mc_forecast(model, x, samples=samples, iwae=iwae, device=device)
    if seconds < SAY_AFTER_S:
        return None
    what = " and ".join(f"{k:,} {name} samples" for name, k in (("Monte Carlo", samples), ("IWAE", iwae)) if k)
    return (f"estimate: this will take about {duration_text(seconds)} ({len(x):,} rows x {what} per row, timed on "
            f"{min(PROBE_ROWS, len(x))} rows); the time grows linearly with --samples and --iwae")


def duration_text(seconds: float) -> str:
    """A duration in words: '45 s', '12 min', '3.2 h', '41 days', '3.17e+04 years'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    if seconds < 365.25 * 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds / (365.25 * 86400):.3g} years"
