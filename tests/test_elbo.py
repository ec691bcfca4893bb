"""The estimator against independent computations: analytic linear-VAE ELBO, torch.distributions, the gap identity."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from entropy_elbo.elbo import estimate
from entropy_elbo.models import ModelConfig, build_model


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random parameters: the identities must hold anywhere, not only at stationary points."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return model


def analytic_linear_elbo(model, x: torch.Tensor) -> float:
    """Closed-form linear-VAE ELBO, using E_q|x - Wz - mu0|^2 = |x - W nu - mu0|^2 + sum_dh W_dh^2 tau_h^2."""
    with torch.no_grad():
        w, mu0, s2 = (t.double() for t in model.ppca())
        nu = (x.double() - mu0) @ model.V.double().T
        tau2 = model.log_tau2.double().exp()
        sq = (x.double() - nu @ w.T - mu0).pow(2).sum(1) + (w.pow(2) @ tau2).sum()
        d = x.shape[1]
        ell = -0.5 * d * torch.log(2 * math.pi * s2) - sq / (2 * s2)
        q = Normal(nu, tau2.sqrt().expand_as(nu))
        kl = kl_divergence(q, Normal(torch.zeros_like(nu), torch.ones_like(nu))).sum(1)
        return float((ell - kl).mean())


def test_mc_elbo_of_linear_vae_matches_its_closed_form():
    model = randomize(build_model(ModelConfig(kind="linear", data_dim=6, latent_dim=3)), 0)
    x = torch.randn(4000, 6, generator=torch.Generator().manual_seed(1)) * 1.5
    est = estimate(model, x.split(1000), samples=50, generator=torch.Generator().manual_seed(2))
    want = analytic_linear_elbo(model, x)
    # The sampling-only standard error is the right yardstick: the data are fixed. 4 SE: failure rate ~6e-5.
    assert abs(est.mc_elbo - want) < 4 * est.mc_sampling_stderr


@pytest.mark.parametrize("variance", ["scalar", "per-dim"])
def test_mc_elbo_equals_torch_distributions_on_the_same_samples(variance):
    torch.manual_seed(0)
    model = randomize(build_model(ModelConfig(kind="vae1", data_dim=5, latent_dim=2, hidden=(7,),
                                              decoder_variance=variance)), 3)
    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(4))
    s = 3
    est = estimate(model, [x], samples=s, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # replay the estimator's draws: one (S, B, H) block
    with torch.no_grad():
        nu, log_tau2 = model.encode(x)
        z = nu + (0.5 * log_tau2).exp() * torch.randn((s, *nu.shape), generator=g)
        mu, log_sigma2 = model.decode(z.reshape(-1, 2))
        lik = Normal(mu.double(), (0.5 * log_sigma2.double()).exp().expand_as(mu)).log_prob(x.double().repeat(s, 1))
        ell = lik.sum(-1).reshape(s, -1).mean(0)
        q = Normal(nu.double(), (0.5 * log_tau2.double()).exp())
        kl = kl_divergence(q, Normal(torch.zeros_like(q.loc), torch.ones_like(q.loc))).sum(-1)
    assert est.mc_elbo == pytest.approx(float((ell - kl).mean()), rel=1e-9)


@pytest.mark.parametrize("variance", ["scalar", "per-dim"])
def test_gap_identity_holds_at_random_parameters(variance):
    """F = F_H + D(1-r)/2 + sum_h (1-a_h)/2 exactly, for the same samples (proof of Thm. 1, eq. 76)."""
    model = randomize(build_model(ModelConfig(kind="vae1", data_dim=8, latent_dim=3, hidden=(16, 16),
                                              decoder_variance=variance)), 6)
    x = torch.rand(300, 8, generator=torch.Generator().manual_seed(7))
    est = estimate(model, x.split(128), samples=4, generator=torch.Generator().manual_seed(8))
    assert est.entropy_elbo + est.stationarity["gap"] == pytest.approx(est.mc_elbo, rel=1e-6)
    assert abs(est.mc_elbo - est.entropy_elbo) > 1e-3  # random parameters: far from stationary


def test_entropy_elbo_of_vae1_matches_direct_formula():
    model = randomize(build_model(ModelConfig(kind="vae1", data_dim=4, latent_dim=2, hidden=(5,))), 9)
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(10))
    est = estimate(model, x.split(7), samples=0)
    with torch.no_grad():
        # the same batches as the estimate: a float32 forward is not bit-identical across batch shapes
        log_tau2 = torch.cat([model.encode(b)[1] for b in x.split(7)])
        enc = Normal(0.0, (0.5 * log_tau2.double()).exp()).entropy().sum(1).mean()
        dec = 4 * Normal(0.0, (0.5 * model.log_sigma2.double()).exp()).entropy()
    prior = 2 * Normal(torch.tensor(0.0, dtype=torch.float64), 1.0).entropy()
    assert est.entropy_elbo == pytest.approx(float(enc - prior - dec), rel=1e-12)
    assert est.mc_elbo is None and est.n == 50


def test_linear_vae_entropy_elbo_needs_no_data():
    """Cor. 1 (eq. 20): tau does not depend on x, so F_H is the same for any data."""
    model = randomize(build_model(ModelConfig(kind="linear", data_dim=6, latent_dim=2)), 11)
    a = estimate(model, [torch.randn(10, 6)], samples=0).entropy_elbo
    b = estimate(model, [torch.randn(999, 6) * 5], samples=0).entropy_elbo
    assert a == b


def test_fixed_decoder_variance_gives_no_entropy_elbo_and_says_why():
    model = build_model(ModelConfig(kind="vae1", data_dim=3, latent_dim=2, decoder_variance="fixed"))
    est = estimate(model, [torch.randn(20, 3)], samples=2, generator=torch.Generator().manual_seed(0))
    assert est.entropy_elbo is None and est.mc_elbo is not None
    assert "never learned" in est.note
