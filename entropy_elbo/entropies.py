"""Closed forms of the paper, in nats: pure tensor functions, no modules and no I/O.

Log-variances in, float64 out. Equation numbers are those of Damm et al. (AISTATS 2023).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI_E = math.log(2 * math.pi * math.e)
LOG_2PI = math.log(2 * math.pi)


def gaussian_entropy(log_var: Tensor) -> Tensor:
    """Entropy of N(m, s^2) per dimension: 0.5 * log(2*pi*e*s^2)."""
    return 0.5 * (LOG_2PI_E + log_var.double())


def encoder_entropy(log_tau2: Tensor) -> Tensor:
    """Entropy of each q(z|x_n), summed over latents (Thm. 2, eq. 14, first term): (B, H) -> (B,)."""
    return gaussian_entropy(log_tau2).sum(-1)


def prior_entropy(h: int, prior_log_var: Tensor | None = None) -> float:
    """Entropy of the prior N(0, A) (eq. 14, second term; eq. 8 for a learned diagonal A)."""
    if prior_log_var is None:
        return 0.5 * h * LOG_2PI_E
    return float(gaussian_entropy(prior_log_var).sum())


def decoder_entropy(log_sigma2: Tensor, d: int) -> Tensor:
    """Entropy of p(x|z) summed over D dimensions (eq. 14, third term).

    log_sigma2 holds one value (scalar variance, broadcast over D) or D values (per-dim), or is
    batched (B, ...) with D values per row (a variance network); returns () or (B,).
    """
    ent = gaussian_entropy(log_sigma2)
    if ent.numel() == 1:
        return ent.reshape(()) * d
    if ent.numel() == d:
        return ent.sum()
    return ent.flatten(1).sum(-1) * (d / ent[0].numel())


def entropy_elbo(mean_encoder_entropy: float, prior_ent: float, mean_decoder_entropy: float) -> float:
    """ELBO at a stationary point as a sum of three entropies (Thm. 1, eq. 5)."""
    return mean_encoder_entropy - prior_ent - mean_decoder_entropy


def latent_kl(nu: Tensor, log_tau2: Tensor, prior_log_var: Tensor | None = None) -> Tensor:
    """KL(N(nu_h, tau_h^2) || N(0, A_h)) per latent, closed form (the summand of eq. 2's KL): (B, H) -> (B, H)."""
    nu, log_tau2 = nu.double(), log_tau2.double()
    if prior_log_var is None:
        return 0.5 * (nu.pow(2) + log_tau2.exp() - log_tau2 - 1)
    log_a = prior_log_var.double()
    return 0.5 * ((nu.pow(2) + log_tau2.exp()) / log_a.exp() + log_a - log_tau2 - 1)


def kl_to_prior(nu: Tensor, log_tau2: Tensor, prior_log_var: Tensor | None = None) -> Tensor:
    """KL(N(nu, tau^2) || N(0, A)) summed over latents, closed form (eq. 2): (B, H) -> (B,)."""
    return latent_kl(nu, log_tau2, prior_log_var).sum(-1)


def gaussian_log_likelihood(x: Tensor, mu: Tensor, log_sigma2: Tensor,
                            dtype: torch.dtype | None = torch.float64) -> Tensor:
    """log N(x; mu, diag sigma^2) summed over every non-batch dimension of x (eq. 2): mu (..., B, *row) -> (..., B).

    In float64 by default; `dtype=None` keeps the inputs' own (the trainer's float32 gradient pass)."""
    target = dtype or torch.promote_types(mu.dtype, x.dtype)
    log_sigma2 = log_sigma2.to(target)
    if (torch.is_grad_enabled() and (mu.requires_grad or log_sigma2.requires_grad)) or \
            torch.broadcast_shapes(mu.shape, x.shape, log_sigma2.shape) != mu.shape:
        sq = (x.to(target) - mu.to(target)).pow(2) * (-log_sigma2).exp()
    else:  # one buffer of mu's shape, built in place: the largest array of a sampling pass
        sq = mu.to(target, copy=True).sub_(x).square_().mul_(log_sigma2.neg().exp_())
    return residual_log_likelihood(sq, log_sigma2, x.dim() - 1)


def residual_log_likelihood(scaled_sq: Tensor, log_sigma2: Tensor, row_dims: int) -> Tensor:
    """The same from the scaled squared residuals (x - mu)^2 / sigma^2, for a caller that keeps them (r, eq. 76),
    summed over the last `row_dims` dimensions: -0.5 sum (log 2 pi sigma^2 + (x - mu)^2 / sigma^2).

    The two sums are taken apart, so a scalar or per-dimension sigma^2 is never spread over the residuals' shape."""
    dims = tuple(range(-row_dims, 0))
    return -0.5 * (broadcast_sum(LOG_2PI + log_sigma2, scaled_sq.shape, row_dims) + scaled_sq.sum(dims))


def broadcast_sum(t: Tensor, shape: torch.Size, row_dims: int) -> Tensor:
    """t broadcast to `shape` and summed over its last `row_dims` dimensions, without building the broadcast:
    the sum over t's own extent times the count of each dimension t broadcasts along: -> shape[:-row_dims]."""
    t = t.reshape((1,) * (len(shape) - t.dim()) + tuple(t.shape))
    dims = tuple(range(len(shape) - row_dims, len(shape)))
    repeats = math.prod(shape[i] for i in dims if t.shape[i] == 1)
    total = t.sum(dims) if t.numel() > 1 else t.reshape(t.shape[: len(shape) - row_dims])
    return (total * repeats if repeats != 1 else total).expand(shape[: len(shape) - row_dims])


def relative_difference(elbo: float | None, entropy_elbo_value: float | None) -> float | None:
    """(ELBO - entropy ELBO) / |ELBO|, the relative difference of Fig. 1 (None when either is missing or ELBO = 0)."""
    if elbo is None or entropy_elbo_value is None or elbo == 0:
        return None
    return (elbo - entropy_elbo_value) / abs(elbo)


def gap_to_elbo(r: Tensor, a: Tensor) -> float:
    """Exact ELBO minus entropy ELBO at any parameters (proof of Thm. 1, eq. 76): sum_d (1-r_d)/2 + sum_h (1-a_h)/2."""
    return float(0.5 * (1 - r.double()).sum() + 0.5 * (1 - a.double()).sum())


def ppca_log_likelihood(w: Tensor, sigma2: float, scatter: Tensor) -> float:
    """Probabilistic PCA log-likelihood per data point (eq. 26); scatter = mean_n (x_n - mu0)(x_n - mu0)^T."""
    w = w.double()
    d = w.shape[0]
    c = w @ w.T + sigma2 * torch.eye(d, dtype=torch.float64)
    chol = torch.linalg.cholesky(c)
    logdet = 2 * torch.log(torch.diagonal(chol)).sum()
    trace = torch.cholesky_solve(scatter.double(), chol).diagonal().sum()
    return float(-0.5 * d * LOG_2PI - 0.5 * logdet - 0.5 * trace)


def bic(n: int, elbo_per_point: float, n_params: int) -> float:
    """Bayesian information criterion from a per-point ELBO (Appendix A): -2*N*F + P*log N."""
    return -2.0 * n * elbo_per_point + n_params * math.log(n)


# ln of the largest float32: a log-variance v with |v| below it has exp(v) and exp(-v) positive and finite in float32.
LOG_VAR_LIMIT = math.log(torch.finfo(torch.float32).max)
