"""How long a Monte Carlo pass will take, said before it starts: one small batch is timed and scaled.

The Monte Carlo ELBO and the IWAE bound cost one decoder pass per sample and row, so their time grows linearly
in rows x samples; probes of PROBE_ROWS rows at two sample counts give the rate (their slope).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from entropy_elbo.estimate import estimate
from entropy_elbo.models.protocol import GaussianVAE
from entropy_elbo.montecarlo import iwae_bound

PROBE_ROWS, PROBE_SAMPLES = 64, 16
SAY_AFTER_S = 30.0  # forecasts shorter than this are not worth a line


def seconds_per_draw(run: Callable[[list[np.ndarray], int], object], batch: np.ndarray) -> float:
    """Seconds per (row x sample) of `run(batches, samples)` on `batch`: the slope between PROBE_SAMPLES and
    4 x PROBE_SAMPLES samples (each the best of two, after a warm-up), so that a call's fixed cost is left out."""
    run([batch], 1)  # first calls pay for allocation and kernels' set-up

    def best(samples: int) -> float:
        times = []
        for _ in range(2):
            start = time.perf_counter()
            run([batch], samples)
            times.append(time.perf_counter() - start)
        return min(times)

    few, many = best(PROBE_SAMPLES), best(4 * PROBE_SAMPLES)
    slope = max(many - few, 0.25 * many)  # timing noise can hide the slope; never below a quarter of the total
    return slope / (len(batch) * 3 * PROBE_SAMPLES)


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
            rate = seconds_per_draw(lambda b, s, fn=fn: fn(model, b, samples=s, generator=gen, device=device), batch)
            total += rate * len(x) * k
    return total


def forecast_message(model: GaussianVAE, x: np.ndarray, *, samples: int, iwae: int,
                     device: torch.device | str) -> str | None:
    """A line saying how long the pass will take, or None when it is short (or too small to be worth a probe)."""
    if len(x) * (samples + iwae) < 100 * PROBE_ROWS * 4 * PROBE_SAMPLES:
        return None
    seconds = mc_forecast(model, x, samples=samples, iwae=iwae, device=device)
    if seconds < SAY_AFTER_S:
        return None
    what = " and ".join(f"{k:,} {name} samples" for name, k in (("Monte Carlo", samples), ("IWAE", iwae)) if k)
    return (f"estimate: this will take about {duration_text(seconds)} ({len(x):,} rows x {what} per row, timed on "
            f"{PROBE_ROWS} rows); the time grows linearly with --samples and --iwae")


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
