"""Monte Carlo pieces of the ELBO (eq. 2): reparameterized samples z ~ q(z|x), decoder passes, float64 sums."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from entropy_elbo.entropies import LOG_2PI, gaussian_entropy
from entropy_elbo.models.protocol import GaussianVAE

ELEMENTS_PER_BLOCK = 2**24  # decoder outputs (samples x rows x D) held at once: ~130 MB in float64


@dataclass
class SampledTerms:
    """Per-data-point Monte Carlo averages over S samples of one batch."""

    loglik: Tensor  # (B,) mean_s log N(x; mu(z_s), sigma^2(z_s))
    loglik_var: Tensor  # (B,) unbiased variance over the S samples (zeros when S == 1)
    sq_ratio: Tensor  # (D,) sum over the batch of mean_s (x - mu)^2 / sigma^2, per observed dimension
    decoder_entropy: Tensor  # (B,) mean_s sum_d 0.5 log(2 pi e sigma_d^2(z_s))


def sample_latents(nu: Tensor, log_tau2: Tensor, samples: int, generator: torch.Generator | None) -> Tensor:
    """Reparameterized z = nu + tau * eps, eps ~ N(0, I): (B, H) -> (S, B, H)."""
    eps = torch.randn((samples, *nu.shape), generator=generator, device=nu.device, dtype=nu.dtype)
    return nu + (0.5 * log_tau2).exp() * eps


def sampled_terms(
    model: GaussianVAE, x: Tensor, nu: Tensor, log_tau2: Tensor, samples: int, generator: torch.Generator | None
) -> SampledTerms:
    """Decoder log-likelihood, residual ratios and decoder entropy averaged over S samples (eq. 2, eq. 22)."""
    b = x.shape[0]
    d = x[0].numel() if b else x.shape[1:].numel()  # (an empty batch: a rank with no rows)
    block = max(1, min(samples, ELEMENTS_PER_BLOCK // max(1, b * d)))
    xd = x.double()
    ll_sum = torch.zeros(b, dtype=torch.float64, device=x.device)
    ll_sq = torch.zeros_like(ll_sum)
    ent_sum = torch.zeros_like(ll_sum)
    ratio = torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device)
    done = 0
    while done < samples:
        s = min(block, samples - done)
        z = sample_latents(nu, log_tau2, s, generator)  # (s, B, H)
        mu, log_sigma2 = model.decode(z.reshape(s * b, nu.shape[-1]))
        log_sigma2 = log_sigma2.double()
        if log_sigma2.dim() > 0 and log_sigma2.shape[0] == s * b:
            log_sigma2 = log_sigma2.reshape(s, b, *log_sigma2.shape[1:])
        # (x - mu)^2 / sigma^2 built in place in one float64 copy of mu: the block's largest buffer
        sq = mu.to(torch.float64, copy=True).reshape(s, *x.shape)  # (s, B, ...)
        sq.sub_(xd).square_().mul_((-log_sigma2).exp())
        # constants first on log sigma^2's own (often scalar) shape, then one full-size temporary
        ll = -0.5 * ((LOG_2PI + log_sigma2) + sq).flatten(2).sum(-1)  # (s, B)
        ll_sum += ll.sum(0)
        ll_sq += ll.pow(2).sum(0)
        ent_sum += gaussian_entropy(log_sigma2).expand_as(sq).flatten(2).sum(-1).sum(0)
        ratio += sq.sum((0, 1))
        done += s
    mean = ll_sum / samples
    var = (ll_sq - samples * mean.pow(2)).clamp_min(0) / max(1, samples - 1)
    return SampledTerms(mean, var, ratio / samples, ent_sum / samples)
