"""The encoder's own stationarity check, a_h = mean_n(nu^2 + tau^2) (eq. 76), on the rows a checkpoint is read on.

a_h needs only the encoder, so every command can check it: at a stationary point every a_h = 1. When the encoder
variance's parameterization is a guess (a head's name, a method's second output, no flag, no distribution object)
and a_h is far from 1 under the guess (max|a_h-1| > A_REFUTED) but within STATIONARY_TOL of 1 under another
parameterization of the same raw output, the guess is what a_h says is wrong: the reading stops and names
`--encoder-var-param` with the parameterization that fits.
Otherwise a far a_h is said (a warning in `collapse`, evidence in `inspect`), never silently passed over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from entropy_elbo.checkpoints.introspect import PARAMS, to_log_var
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.stationarity import STATIONARY_TOL

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.introspect import Introspection
    from entropy_elbo.checkpoints.options import LoadOptions

A_REFUTED = 1.0  # max|a_h - 1| beyond which a guess may be refuted (some a_h > 2), by a reading within
# STATIONARY_TOL of 1. A std read as a log-variance gives a_h = 1 - s^2 + e^s > 2 at a stationary point; an
# untrained model's a_h stay below 2 under the log-variance guess (~1.6 at most) while some other reading of its
# near-zero raw output (softplus_var: ln 2) lands near 1 by chance, which must not refute anything
DEFINED = ("entropy-elbo", "pythae", "diffusers")  # formats whose encoder variance is a log-variance by definition


def raw_output(log_tau2: Tensor, param: str) -> Tensor:
    """The stored or returned value that `param` maps to log tau^2: the inverse of introspect.to_log_var."""
    if param == "logvar":
        return log_tau2
    if param == "logstd":
        return log_tau2 / 2
    if param in ("std", "var"):
        return (log_tau2 / (2 if param == "std" else 1)).exp()
    y = (log_tau2 / (2 if param == "softplus_std" else 1)).exp()  # softplus(raw) = std or var
    return y + torch.log(-torch.expm1(-y))  # softplus^-1(y)


def a_far(nu: Tensor, log_tau2: Tensor, prior_log_var: Tensor | None = None) -> tuple[Tensor, float]:
    """a_h over the rows (eq. 76, over the prior's variances for a learned prior), (H,) float64, and max|a_h - 1|."""
    a = (nu.double().pow(2) + log_tau2.double().exp().expand_as(nu)).mean(0)
    if prior_log_var is not None:
        a = a / prior_log_var.detach().double().cpu().to(a.device).exp()
    return a, float((a - 1).abs().max())


def guessed_param(intro: Introspection | None, options: LoadOptions) -> str | None:
    """The encoder variance's parameterization when it is a guess, else None (a flag, a distribution object, or
    a format that defines it)."""
    enc = intro.encoder if intro is not None else None
    if enc is None or options.encoder_var_param is not None or intro.fmt in DEFINED or enc.param not in PARAMS:
        return None
    return enc.param if "--encoder-var-param" in (enc.override or "") else None


@torch.no_grad()
def check_encoder(model: object, rows: Tensor, intro: Introspection | None, options: LoadOptions,
                  device: torch.device | str = "cpu") -> str | None:
    """The a_h evidence on `rows` (one sentence, or None when every a_h is near 1); raises when the encoder
    variance's parameterization is a guess that a_h says is wrong and another fits."""
    x = rows.to(device=device, dtype=torch.float32)
    try:
        nu, log_tau2 = model.encode(x)
    except (RuntimeError, ValueError):  # the model cannot run on these rows: the pass's own checks say why
        return None
    nu, log_tau2 = nu.double(), log_tau2.double().expand_as(nu)
    prior = getattr(model, "prior_log_var", None)
    a, far = a_far(nu, log_tau2, prior)
    if far <= STATIONARY_TOL:
        return None
    said = (f"a_h = mean_n(nu^2 + tau^2) on {len(x)} data rows: max|a_h-1| = {far:.3g} (mean a_h {float(a.mean()):.3g}"
            "; 1 at a stationary point, eq. 76)")
    guess = guessed_param(intro, options)
    if guess is None:
        return said
    fits = {}
    for param in PARAMS:
        if param != guess:
            other = to_log_var(raw_output(log_tau2, guess), param)
            if torch.isfinite(other).all():
                fits[param] = a_far(nu, other, prior)[1]
    best = min(fits, key=fits.get, default=None)
    if best is None or far <= A_REFUTED or fits[best] > STATIONARY_TOL:  # refuted only by a reading that fits well
        return f"{said}; under the guessed {guess} reading (--encoder-var-param P to set it)"
    raise EntropyElboError(f"{intro.source}: encoder variance {intro.encoder.name} read as {guess} (a guess) gives "
                           f"max|a_h-1| = {far:.3g} on {len(x)} data rows, but read as {best} it gives "
                           f"{fits[best]:.3g} "
                           f"(a_h = 1 at a stationary point, eq. 76); pass --encoder-var-param {best} if that is how "
                           f"the model stores it, or --encoder-var-param {guess} to keep the guess")
