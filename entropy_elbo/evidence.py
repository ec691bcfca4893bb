"""What a reading gives on the data rows, said as evidence in `inspect` (issue #22).

A reading that runs is not yet right: a variance read under the wrong parameterization can give tau^2 of
1e20 (a std of 50 read as a log-variance) or 1e-20, and a decoder output read as the mean when the training
loss applied a sigmoid gives means far outside the data's range. Neither stops a number from coming out, so
`inspect --data` says both as warnings (library notes: Python callers and the CLI read the same lines).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from entropy_elbo.errors import EntropyElboError

TAU2_RANGE = (1e-12, 1e3)  # a latent whose median tau^2 lies outside: a trained encoder's tau^2 sit within
# (a collapsed latent has tau^2 = 1; a used one rarely goes below 1e-8 in float32 training)
LOG_TAU2_HUGE = 30.0  # ln tau^2 above this (tau^2 > 1e13) on any row: exp of something huge
OUTSIDE_SHARE = 0.01  # a share of decoder means beyond one data span outside the data's range that is evidence


def tau2_evidence(log_tau2: Tensor) -> list[str]:
    """Latents whose median tau^2 over the rows is outside TAU2_RANGE, and rows whose ln tau^2 is huge."""
    lo, hi = TAU2_RANGE
    median = log_tau2.double().median(0).values  # (H,) ln tau^2
    out = (median > math.log(hi)) | (median < math.log(lo))
    said = []
    if bool(out.any()):
        shown = ", ".join(f"{int(h)} ({math.exp(float(median[h])):.3g})" for h in out.nonzero().flatten()[:5])
        more = f" and {int(out.sum()) - 5} more" if int(out.sum()) > 5 else ""
        said.append(f"encoder tau^2 outside [{lo:g}, {hi:g}] for {int(out.sum())} of {len(median)} latents "
                    f"(latent (median tau^2): {shown}{more}): a variance read under the wrong parameterization (a std "
                    "or a variance read as a log-variance), or an encoder that does not sample; check "
                    "--encoder-var-param")
    top = float(log_tau2.max())
    if top > LOG_TAU2_HUGE:
        said.append(f"encoder tau^2 = exp({top:.3g}) on some row: exp of a huge output, as when a raw output that is "
                    "not a log-variance is read as one; check --encoder-var-param")
    return said


def mean_evidence(mu: Tensor, x: Tensor) -> list[str]:
    """Decoder means (at the encoder means) more than one data span outside the data's range, on over 1% of them."""
    mu, x = mu.double().flatten(1), x.double().flatten(1)
    lo, hi = float(x.min()), float(x.max())
    span = max(hi - lo, 1e-12)
    share = float(((mu < lo - span) | (mu > hi + span)).double().mean())
    if share <= OUTSIDE_SHARE:
        return []
    return [f"decoder means mu(nu) on {len(x)} data rows: {share:.1%} lie more than the data's span ({span:.3g}) "
            f"outside its range [{lo:.3g}, {hi:.3g}] (they span [{float(mu.min()):.3g}, {float(mu.max()):.3g}]): "
            "logits read as means (--output-activation sigmoid), data scaled otherwise than in training, or the "
            "wrong decoder output"]


@torch.no_grad()
def reading_evidence(model: object, rows: Tensor) -> list[str]:
    """The warnings a reading earns on `rows`: tau^2 outside a sane range, decoder means far outside the data's."""
    x = rows.to(torch.float32)
    try:
        nu, log_tau2 = model.encode(x)
    except (EntropyElboError, RuntimeError, ValueError):  # the estimate's own checks say why it cannot run
        return []
    said = tau2_evidence(log_tau2.expand_as(nu))
    try:
        mu = model.decode(nu)[0]
    except (EntropyElboError, RuntimeError, ValueError):  # a refused decoder (Laplace) or no decoder at all
        return said
    return said + (mean_evidence(mu, x) if mu.numel() == x.numel() else [])
