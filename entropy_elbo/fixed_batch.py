"""The fixed batch a training run measures after each epoch: the entropy ELBO and the MC ELBO in eval mode on the
same rows, chosen once with the run's seed (held-out rows when the run has a holdout, else training rows).

The sampled training ELBO of an epoch row is an average over batches of a model that changed between them, in
train mode, with fresh samples: too noisy (+-5% on a small run) to tell how far the model is from a stationary
point. The fixed batch is measured by one model, in eval mode, with the same row-seeded samples every epoch
(common random numbers), so the pair (`entropy_elbo`, `mc_elbo`) and its relative difference are comparable across
epochs; `plot` draws them. Logged under `fixed_batch` in each epoch row, in nats per data point.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from entropy_elbo import elbo
from entropy_elbo.entropies import relative_difference
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.montecarlo import RowSeed

FIXED_ROWS = 1000  # at most this many rows
FIXED_SAMPLES = 4  # MC samples per row (fewer when training itself draws fewer)


@dataclass(frozen=True)
class FixedBatch:
    """The rows measured each epoch and which rows they are ("holdout" or "train")."""

    rows: Tensor
    which: str
    samples: int
    seed: int


def choose(train: Tensor, held: Tensor | None, seed: int, samples: int) -> FixedBatch:
    """Up to FIXED_ROWS rows of the held-out set (else of the training set), drawn once from `seed` by a generator
    of their own (the training random state is untouched), kept in their original order."""
    source, which = (held, "holdout") if held is not None and len(held) else (train, "train")
    n = source.shape[0]
    if n <= FIXED_ROWS:
        return FixedBatch(source, which, min(FIXED_SAMPLES, samples), seed)
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:FIXED_ROWS].sort().values
    return FixedBatch(source[pick.to(source.device)], which, min(FIXED_SAMPLES, samples), seed)


def measure(model: torch.nn.Module, fixed: FixedBatch, restore: Callable[[], None]) -> dict[str, object]:
    """The entropy ELBO and the MC ELBO of `model` on the fixed rows in eval mode (nats per data point); `restore`
    puts the model back in its training mode. A figure that does not exist or is not finite is null. `mc_stderr`
    is the MC ELBO's standard error over the rows and samples: which rows were drawn moves the MC ELBO by about
    that much, the entropy ELBO (no likelihood term) far less, so a difference within ~2 of it is no evidence."""
    was = model.training
    model.eval()
    try:
        acc = elbo.accumulate(model, [fixed.rows], samples=fixed.samples, generator=RowSeed(fixed.seed),
                              device=fixed.rows.device)
        est = elbo.summarize(model, acc, samples=fixed.samples, d=int(fixed.rows[0].numel()))
        f_h, mc, se = _finite(est.entropy_elbo), _finite(est.mc_elbo), _finite(est.mc_stderr)
    except EntropyElboError:  # outputs that overflow on these rows: the training step's own checks stop the run
        f_h = mc = se = None
    finally:
        if was:
            restore()
    return {"rows": fixed.which, "n": int(fixed.rows.shape[0]), "mc_samples": fixed.samples,
            "entropy_elbo": f_h, "mc_elbo": mc, "mc_stderr": se, "relative_difference": relative_difference(mc, f_h)}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
