"""IWAE bound against the exact marginal likelihood of linear-Gaussian VAEs (pPCA, eq. 26)."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from entropy_elbo.elbo import estimate
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models import LinearVAE, ModelConfig
from entropy_elbo.montecarlo import iwae_bound, iwae_terms

D, H, N = 10, 2, 400


def linear_vae(seed: int = 0) -> tuple[LinearVAE, torch.Tensor, torch.Tensor]:
    """A linear VAE whose encoder is a deliberately imperfect posterior, data drawn from its decoder, exact log p."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, H, generator=g))
    w, s2, mu0 = q * torch.tensor([2.0, 1.0]), 0.1, torch.rand(D, generator=g)
    x = (torch.randn(N, H, generator=g) @ w.T + mu0 + s2**0.5 * torch.randn(N, D, generator=g)).float()
    m = w.T @ w + s2 * torch.eye(H)  # posterior precision times sigma^2; diagonal since W's columns are orthogonal
    model = LinearVAE(ModelConfig(kind="linear", data_dim=D, latent_dim=H))
    with torch.no_grad():
        model.W.copy_(w)
        model.mu0.copy_(mu0)
        model.log_sigma2.fill_(math.log(s2))
        model.V.copy_(1.2 * torch.linalg.solve(m, w.T))  # posterior mean, scaled 20% off
        model.log_tau2.copy_(torch.log(s2 / torch.diagonal(m)) + math.log(3.0))  # posterior variance, 3x too wide
    cov = (w @ w.T + s2 * torch.eye(D)).double()
    exact = MultivariateNormal(mu0.double(), cov).log_prob(x.double())  # (N,) log p(x_n), independent of our code
    return model.eval(), x, exact


def per_point(model, x, k, seed):
    with torch.inference_mode():
        nu, log_tau2 = model.encode(x)
        return iwae_terms(model, x, nu, log_tau2, k, torch.Generator().manual_seed(seed))


def test_iwae_climbs_from_elbo_to_exact_ppca_loglik_as_k_grows():
    model, x, exact = linear_vae()
    est = estimate(model, [x], samples=200, generator=torch.Generator().manual_seed(9))
    assert est.ppca_loglik == pytest.approx(float(exact.mean()), abs=1e-6)  # eq. 26 agrees with the MVN
    gaps = {k: (exact - per_point(model, x, k, seed=k)).numpy() for k in (1, 10, 100, 1000)}
    mean = {k: g.mean() for k, g in gaps.items()}
    se = {k: g.std(ddof=1) / math.sqrt(N) for k, g in gaps.items()}
    # ELBO <= IWAE_1: same expectation; the MC ELBO's paired gap to log p matches IWAE_1's within errors
    elbo_gap = float(exact.mean()) - est.mc_elbo
    assert elbo_gap == pytest.approx(mean[1], abs=4 * (se[1] + est.mc_sampling_stderr))
    assert elbo_gap > 0.5  # the imperfect encoder leaves a real gap for IWAE to close
    for small, large in ((1, 10), (10, 100)):  # IWAE_K < IWAE_K' clearly while the gap is large
        assert mean[large] < mean[small] - 3 * math.hypot(se[small], se[large])
    assert mean[1000] < mean[100] + 3 * math.hypot(se[100], se[1000])  # and never falls back
    for g, s in zip(mean.values(), se.values(), strict=True):  # IWAE_K <= log p(x)
        assert g > -3 * s
    assert mean[1000] < 0.01  # within 0.01 nats of the exact log-likelihood


def test_iwae_bound_is_the_mean_of_per_point_terms_with_its_standard_error():
    model, x, _ = linear_vae(1)
    terms = per_point(model, x, 50, seed=3).numpy()
    bound = iwae_bound(model, [x.numpy()], samples=50, generator=torch.Generator().manual_seed(3))
    assert (bound.n, bound.samples) == (N, 50)
    assert bound.value == pytest.approx(terms.mean(), abs=1e-9)
    assert bound.stderr == pytest.approx(terms.std(ddof=1) / math.sqrt(N), rel=1e-6)
    chunked = iwae_bound(model, [x[:150].numpy(), x[150:].numpy()], samples=50,
                         generator=torch.Generator().manual_seed(4))
    assert chunked.n == N
    assert chunked.value == pytest.approx(bound.value, abs=0.02)  # differs by sampling noise only


class PriorLinearVAE(LinearVAE):
    """A linear VAE with a learned prior N(0, A) (as VAE-2, eq. 8): p(x) = N(mu0, W A W^T + sigma^2 I)."""

    def __init__(self, config: ModelConfig, log_a: torch.Tensor) -> None:
        super().__init__(config)
        self.log_a = log_a

    @property
    def prior_log_var(self) -> torch.Tensor:
        return self.log_a


def test_iwae_uses_the_learned_prior_variance():
    base, x, _ = linear_vae(2)
    log_a = torch.tensor([0.8, -0.5])
    model = PriorLinearVAE(base.config, log_a)
    model.load_state_dict(base.state_dict())
    a = torch.diag(log_a.exp()).double()
    w = model.W.detach().double()
    cov = w @ a @ w.T + model.log_sigma2.detach().exp().double() * torch.eye(D, dtype=torch.float64)
    exact = MultivariateNormal(model.mu0.detach().double(), cov).log_prob(x.double())
    gap = (exact - per_point(model, x, 300, seed=5)).numpy()
    assert gap.mean() + 3 * gap.std(ddof=1) / math.sqrt(N) > 0
    assert gap.mean() < 0.02


def test_iwae_rejects_nonpositive_k_and_empty_data():
    model, x, _ = linear_vae()
    with pytest.raises(EntropyElboError, match="--iwae: got 0"):
        iwae_bound(model, [x], samples=0)
    with pytest.raises(EntropyElboError, match="no rows"):
        iwae_bound(model, iter([]), samples=5)
    with pytest.raises(EntropyElboError, match="no rows"):
        iwae_bound(model, [np.zeros((0, D), np.float32)], samples=5)
