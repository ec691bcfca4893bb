"""Closed forms against torch.distributions and against direct computation."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from entropy_elbo import entropies


def test_gaussian_entropy_matches_torch_distributions():
    log_var = torch.linspace(-9, 4, 50)
    want = Normal(0.0, (0.5 * log_var.double()).exp()).entropy()
    assert torch.allclose(entropies.gaussian_entropy(log_var), want, rtol=1e-12)


def test_standard_normal_prior_entropy_value():
    assert entropies.prior_entropy(1) == pytest.approx(1.4189385332046727, rel=1e-15)
    assert entropies.prior_entropy(3, torch.zeros(3)) == pytest.approx(3 * 1.4189385332046727)


def test_kl_matches_torch_distributions_for_learned_prior():
    g = torch.Generator().manual_seed(0)
    nu, log_tau2, log_a = torch.randn(7, 3, generator=g), torch.randn(7, 3, generator=g), torch.randn(3, generator=g)
    q = Normal(nu.double(), (0.5 * log_tau2.double()).exp())
    for prior_log_var, scale in ((None, torch.ones(3)), (log_a, (0.5 * log_a.double()).exp())):
        want = kl_divergence(q, Normal(torch.zeros(3, dtype=torch.float64), scale.double())).sum(-1)
        got = entropies.kl_to_prior(nu, log_tau2, prior_log_var)
        assert torch.allclose(got, want, rtol=1e-10)


def test_log_likelihood_matches_torch_distributions_with_broadcast_variance():
    g = torch.Generator().manual_seed(1)
    x, mu = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    for log_sigma2 in (torch.tensor(-0.7), torch.randn(6, generator=g), torch.randn(4, 6, generator=g)):
        want = Normal(mu.double(), (0.5 * log_sigma2.double()).exp()).log_prob(x.double()).sum(-1)
        assert torch.allclose(entropies.gaussian_log_likelihood(x, mu, log_sigma2), want, rtol=1e-12)


def test_decoder_entropy_scalar_per_dim_and_batched():
    d = 5
    s = torch.tensor(-2.0)
    assert float(entropies.decoder_entropy(s, d)) == pytest.approx(d * 0.5 * (math.log(2 * math.pi * math.e) - 2))
    per_dim = torch.randn(d)
    want = float(entropies.gaussian_entropy(per_dim).sum())
    assert float(entropies.decoder_entropy(per_dim, d)) == pytest.approx(want)
    batched = torch.randn(3, d)
    assert torch.allclose(entropies.decoder_entropy(batched, d), entropies.gaussian_entropy(batched).sum(-1))


def test_ppca_log_likelihood_matches_multivariate_normal():
    g = torch.Generator().manual_seed(2)
    w, mu0 = torch.randn(6, 2, generator=g).double(), torch.randn(6, generator=g).double()
    x = torch.randn(500, 6, generator=g).double() * 2 + 1
    c = w @ w.T + 0.3 * torch.eye(6, dtype=torch.float64)
    want = torch.distributions.MultivariateNormal(mu0, c).log_prob(x).mean()
    scatter = (x - mu0).T @ (x - mu0) / len(x)
    assert entropies.ppca_log_likelihood(w, 0.3, scatter) == pytest.approx(float(want), rel=1e-10)


def test_bic_formula():
    assert entropies.bic(100, 2.0, 21) == pytest.approx(-400 + 21 * math.log(100))
