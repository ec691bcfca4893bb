"""What the streaming pass refuses: a negative sample count, encoder outputs that are NaN, Inf, zero or infinite in
float32 (naming the data row, or the model's own weights where they diverged), and figures that overflowed."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from entropy_elbo import entropies
from entropy_elbo.errors import EntropyElboError

if TYPE_CHECKING:
    from entropy_elbo.elbo import Estimate

_TAU2_LIMIT = math.exp(entropies.LOG_VAR_LIMIT) * (1 - 1e-9)  # a float64 tau^2 this large is infinite in float32


def plausible(nu2: Tensor, tau2: Tensor, log_tau2_sum: Tensor, log_tau2: Tensor) -> bool:
    """Whether a batch's encoder outputs pass `check_encoder_output`, from its sums and one reduction: a NaN or Inf
    mean or variance makes a sum non-finite, a tau^2 infinite in float32 makes its latent's sum at least that
    large, and the smallest ln tau^2 shows a tau^2 that is zero in float32. False sends the batch to the search."""
    if log_tau2.numel() == 0:
        return True
    bounds = torch.stack([nu2.sum() + tau2.sum() + log_tau2_sum, tau2.max(), log_tau2.min().double()]).tolist()
    return math.isfinite(bounds[0]) and bounds[1] < _TAU2_LIMIT and bounds[2] > -entropies.LOG_VAR_LIMIT


def check_samples(samples: int) -> None:
    """Refuse a negative Monte Carlo sample count, in words a notebook user and a CLI user both read."""
    if samples < 0:
        raise EntropyElboError(f"samples (--samples): got {samples}; pass 0 (no Monte Carlo) or a positive count")


def check_encoder_output(nu: Tensor, log_tau2: Tensor, first_row: int, model: torch.nn.Module | None = None) -> None:
    """Refuse encoder outputs with NaN/Inf means or variances tau^2 that are zero or infinite in float32; where the
    model's own weights hold NaN or Inf (a training run that diverged), blame those, not the data."""
    if nu.numel() == 0:
        return
    limit = entropies.LOG_VAR_LIMIT
    bounds = torch.stack([*torch.aminmax(nu), *torch.aminmax(log_tau2)]).tolist()  # a NaN propagates to these
    if all(map(math.isfinite, bounds[:2])) and -limit < bounds[2] and bounds[3] < limit:  # (and fails a comparison)
        return  # reductions, no copies: only outputs that fail are searched for the first bad row and latent
    bad = ~torch.isfinite(nu) | ~(log_tau2.abs() < entropies.LOG_VAR_LIMIT)  # (B, H)
    if bad.any():
        broken = next((n for n, t in model.named_parameters() if t.is_floating_point()
                       and not torch.isfinite(t).all()), None) if model is not None else None
        if broken is not None:
            raise EntropyElboError(f"the model's own weights hold NaN or Inf (parameter {broken!r}), so its encoder "
                                   "outputs do too: its training diverged; this is not the data's fault, use weights "
                                   "from before the divergence (a lower learning rate avoids it)")
        row, h = (int(i) for i in bad.nonzero()[0])
        raise EntropyElboError(
            f"data row {first_row + row}, latent {h}: the encoder gives mean {float(nu[row, h]):g} and "
            f"ln tau^2 {float(log_tau2[row, h]):g} (tau^2 zero, infinite or NaN in float32); "
            "the checkpoint does not fit this data: check the data (--data) and its scaling, or how the encoder "
            "variance is stored (--encoder-var-param; see `entropy-elbo inspect`)"
        )


def check_finite_estimate(est: Estimate) -> Estimate:
    """Refuse an estimate whose figures overflowed, naming them, instead of printing NaN or Inf."""
    figures = {"entropy ELBO": est.entropy_elbo, "Monte Carlo ELBO": est.mc_elbo, "pPCA log-lik": est.ppca_loglik,
               **{f"{k} entropy": v for k, v in est.entropies.items()}}
    figures["r"] = est.stationarity.get("r")
    bad = {k: v for k, v in figures.items() if v is not None and not math.isfinite(v)}
    if bad:
        named = ", ".join(f"{k} = {v}" for k, v in bad.items())
        raise EntropyElboError(f"the estimate is not finite ({named}): the model's outputs overflow on this data; "
                               "check the checkpoint and that the data (--data) is scaled as in training")
    return est
