"""How near a checkpoint is to a stationary point: the gap identity's warnings, and the ELBO at sigma*^2.

At a stationary point r = 1 and every a_h = 1 (eq. 76); the exact gap identity F = F_H + D(1-r)/2 + sum_h (1-a_h)/2
says how far the entropy ELBO is from the checkpoint's ELBO when they are not.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from entropy_elbo import entropies
from entropy_elbo.errors import EntropyElboError

if TYPE_CHECKING:
    from entropy_elbo.elbo import Estimate

STATIONARY_TOL = 0.1  # warn when r or any a_h is further than this from 1 (docs/checkpoints.md: "When a number
# is not trusted")


def stationarity_warnings(est: Estimate) -> list[str]:
    """Why the entropy ELBO may not be this checkpoint's ELBO: r or a_h far from 1 (gap identity, eq. 76)."""
    st, out = est.stationarity, []
    fixed = est.decoder_variance == "fixed"
    r = st.get("r")
    if isinstance(r, float) and abs(r - 1) > STATIONARY_TOL:
        if fixed:
            out.append(f"r = {r:.4g}: the stated decoder variance sigma^2 is far from the best one given the rest "
                       f"(sigma*^2 = sigma^2 r = {st.get('sigma2_optimal', float('nan')):.4g}), so the Monte Carlo "
                       "ELBO is that of a poor variance choice; at_optimal_variance (--decoder-variance optimal) gives "
                       "the ELBO at sigma*^2")
        else:
            out.append(f"r = {r:.4g} is far from 1: the decoder term D(1-r)/2 = {0.5 * est.d * (1 - r):.4g} nats/point "
                       "of the gap identity (eq. 76) is not zero, so the entropy ELBO is not this checkpoint's ELBO; "
                       "the model is not at a stationary point, or its output activation or decoder variance was "
                       "misread (see `entropy-elbo inspect`)")
    far = encoder_far_warning(st.get("a") or [], elbo=not fixed)
    if far:
        out.append(far)
    return out


def encoder_far_warning(a: list[float], *, elbo: bool = True) -> str | None:
    """Why a_h = mean_n(nu^2 + tau^2) far from 1 matters (eq. 76), or None when every a_h is within STATIONARY_TOL;
    `elbo`: the entropy ELBO is at stake (estimate), else only the encoder (collapse, inspect)."""
    far = [(h, v) for h, v in enumerate(a) if abs(v - 1) > STATIONARY_TOL]
    if not far:
        return None
    shown = ", ".join(f"z{h} {v:.3g}" for h, v in far[:8]) + (", ..." if len(far) > 8 else "")
    term = 0.5 * sum(1 - v for v in a)
    what = "so the entropy ELBO is not this checkpoint's ELBO; " if elbo else ""
    return (f"a_h = mean_n(nu^2 + tau^2) is far from 1 for {len(far)} of {len(a)} latents ({shown}): the encoder "
            f"term sum_h (1-a_h)/2 = {term:.4g} nats/point of the gap identity (eq. 76) is not zero, {what}the "
            "encoder is not at a stationary point, or its variance parameterization (log-variance, softplus std, "
            "log-std, std) was misread (--encoder-var-param; see `entropy-elbo inspect`)")


def at_optimal_variance(est: Estimate) -> Estimate:
    """The estimate of a fixed-variance model with sigma^2 replaced by sigma*^2 = sigma^2 r, the variance that
    maximises the Monte Carlo ELBO given the rest (closed form from the same pass and samples)."""
    st = dict(est.stationarity)
    if "mc_elbo_at_sigma2_optimal" not in st:
        raise EntropyElboError("the optimal decoder variance (--decoder-variance optimal) needs a scalar decoder "
                               "variance and an estimate with samples >= 1 (--samples 1 or more)")
    s2 = float(st["sigma2_optimal"])
    st.update(r=1.0, sigma2=s2, sigma2_optimal=s2)  # no gap: a fixed sigma^2 has no entropy ELBO to be apart from
    mc, se, sse = (st.pop(k) for k in ("mc_elbo_at_sigma2_optimal", "mc_stderr_at_sigma2_optimal",
                                       "mc_sampling_stderr_at_sigma2_optimal"))
    ents = dict(est.entropies, decoder=est.d * float(entropies.gaussian_entropy(torch.tensor(math.log(s2)))))
    note = (f"decoder variance set to sigma*^2 = sigma^2 r = {s2:.6g} (--decoder-variance optimal), the value that "
            "maximises the Monte Carlo ELBO given the encoder and decoder mean: the best ELBO this fixed-variance "
            "model reaches, not one it was trained at; the entropy form still does not apply (sigma^2 was never "
            "learned)")
    out = replace(est, mc_elbo=mc, mc_stderr=se, mc_sampling_stderr=sse, stationarity=st, entropies=ents, note=note)
    out.warnings = stationarity_warnings(out)
    return out
