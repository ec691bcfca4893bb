"""The candidates as one stacked model: parameters padded to the largest H and masked, their sampled ELBO and its
gradient by hand, and the closed-form entropy ELBO and BIC of linear VAEs (Cor. 1, eq. 20; App. A, eq. 27)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from entropy_elbo import entropies
from entropy_elbo.models import LinearVAE, ModelConfig, build_model


def n_params(h: int, d: int) -> int:
    """Point-estimated parameters of a linear VAE for the BIC: the elements of W plus sigma^2 (App. A)."""
    return h * d + 1


def linear_entropy_elbo(log_tau2: Tensor, log_sigma2: Tensor, d: int) -> Tensor:
    """Entropy ELBO of linear VAEs from their variances alone (Cor. 1, eq. 20): (..., H), (...) -> (...).

    Latents padded with log tau^2 = 0 add the prior's entropy to the encoder's, so they cancel exactly.
    """
    h = log_tau2.shape[-1]
    return entropies.encoder_entropy(log_tau2) - entropies.prior_entropy(h) - d * entropies.gaussian_entropy(log_sigma2)


def bic_table(elbo: np.ndarray, rows: np.ndarray, latents: Sequence[int], d: int) -> np.ndarray:
    """BIC = -2 n F + P log n (eq. 27) for per-point ELBOs (T, K) of batches with `rows` (T,) rows each."""
    n = rows.astype(np.float64)[:, None]  # (T, 1)
    p = np.array([n_params(h, d) for h in latents], dtype=np.float64)[None, :]  # (1, K)
    return -2.0 * n * elbo + p * np.log(n)


def initial_models(latents: Sequence[int], d: int, seed: int, init_log_sigma2: float = 0.0) -> list[LinearVAE]:
    """One fresh LinearVAE per candidate H, seeded in order, without touching the global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [build_model(ModelConfig(kind="linear", data_dim=d, latent_dim=h, init_log_sigma2=init_log_sigma2))
                for h in latents]


def stack_models(models: Sequence[LinearVAE], device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
    """The candidates' parameters padded to the largest H: mu0 (K, D), V (K, H, D), W (K, D, H), log_tau2 (K, H),
    log_sigma2 (K,), and the mask (K, H) of real latents."""
    k, d = len(models), models[0].config.data_dim
    hmax = max(m.latent_dim for m in models)
    out = {"mu0": torch.zeros(k, d), "V": torch.zeros(k, hmax, d), "W": torch.zeros(k, d, hmax),
           "log_tau2": torch.zeros(k, hmax), "log_sigma2": torch.zeros(k), "mask": torch.zeros(k, hmax)}
    with torch.no_grad():
        for i, m in enumerate(models):
            h = m.latent_dim
            out["mu0"][i] = m.mu0
            out["V"][i, :h] = m.V
            out["W"][i, :, :h] = m.W
            out["log_tau2"][i, :h] = m.log_tau2
            out["log_sigma2"][i] = m.log_sigma2
            out["mask"][i, :h] = 1.0
    return {name: t.to(device=device, dtype=dtype) for name, t in out.items()}


def unstack_into(models: Sequence[LinearVAE], params: dict[str, Tensor]) -> None:
    """Copy the stacked parameters back into the candidates' LinearVAEs (float32, CPU)."""
    with torch.no_grad():
        for i, m in enumerate(models):
            h = m.latent_dim
            m.mu0.copy_(params["mu0"][i].cpu())
            m.V.copy_(params["V"][i, :h].cpu())
            m.W.copy_(params["W"][i, :, :h].cpu())
            m.log_tau2.copy_(params["log_tau2"][i, :h].cpu())
            m.log_sigma2.copy_(params["log_sigma2"][i].cpu())


def eps_moments(eps: Tensor) -> tuple[Tensor, Tensor]:
    """First and second moments over S samples of eps (K, S, B, H): (K, B, H) and (K, B, H, H)."""
    s = eps.shape[1]
    return eps.mean(1), torch.einsum("ksbh,ksbg->kbhg", eps, eps) / s


def stacked_elbo_and_grad(p: dict[str, Tensor], mask: Tensor, x: Tensor, m1: Tensor,
                          m2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Sampled ELBO per point (eq. 2) of K stacked linear VAEs on one batch x (B, D), (K,), and its gradients.

    The samples z_s = nu + T eps_s (T = diag tau) enter through the moments m1, m2 of eps (`eps_moments`): for
    a linear decoder mean_s ||x - mu0 - W z_s||^2 = ||r||^2 - 2 r^T A m1 + tr(A m2 A^T) with r = x - mu0 - W nu
    and A = W T, the same value as the sample average without a decoder pass per sample. The gradients are
    this expression's, by hand (the tests check them against autograd on LinearVAE); padded latents get none.
    """
    v, w, log_tau2 = p["V"] * mask[:, :, None], p["W"] * mask[:, None, :], p["log_tau2"] * mask  # masked
    d, b = x.shape[-1], x.shape[0]
    xc = x - p["mu0"][:, None, :]  # (K, B, D)
    nu = torch.bmm(xc, v.transpose(1, 2))  # (K, B, H)
    tau2 = log_tau2.exp()  # (K, H)
    tau = tau2.sqrt()
    a = w * tau[:, None, :]  # (K, D, H): W T
    r = xc - torch.bmm(nu, w.transpose(1, 2))  # (K, B, D)
    u = torch.bmm(m1, a.transpose(1, 2))  # (K, B, D): A m1
    am2 = torch.matmul(a[:, None], m2)  # (K, B, D, H): A m2
    sq = r.pow(2).sum(-1) - 2 * (r * u).sum(-1) + (am2 * a[:, None]).sum((-2, -1))  # (K, B)
    log_sigma2 = p["log_sigma2"]  # (K,)
    lam = (-log_sigma2).exp()[:, None]  # (K, 1): 1 / sigma^2
    loglik = -0.5 * (d * (entropies.LOG_2PI + log_sigma2)[:, None] + sq * lam)  # (K, B)
    kl = 0.5 * (nu.pow(2) + tau2[:, None] - log_tau2[:, None] - 1).sum(-1)  # (K, B)
    f = (loglik - kl).mean(-1)  # (K,)
    # gradients of f, averaged over the batch; lam3 broadcasts 1/sigma^2 over (K, B, .)
    lam3 = lam[:, :, None]
    e = r - u  # (K, B, D): half the gradient of sq with respect to r
    g_nu = lam3 * torch.bmm(e, w) - nu  # (K, B, H)
    g_xc = -lam3 * e + torch.bmm(g_nu, v)  # (K, B, D)
    g_a = lam3 * (torch.bmm(r.transpose(1, 2), m1) - am2.sum(1)) / b  # (K, D, H)
    grads = {
        "mu0": -g_xc.mean(1),
        "V": torch.bmm(g_nu.transpose(1, 2), xc) / b * mask[:, :, None],
        "W": (lam3 * torch.bmm(e.transpose(1, 2), nu) / b + g_a * tau[:, None, :]) * mask[:, None, :],
        "log_tau2": (0.5 * tau * (g_a * w).sum(1) - 0.5 * (tau2 - 1)) * mask,
        "log_sigma2": -0.5 * d + 0.5 * (lam * sq).mean(-1),
    }
    return f, grads
