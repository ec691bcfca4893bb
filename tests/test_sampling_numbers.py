"""The sampled figures (MC ELBO, IWAE, sampled decoder entropy) against a plain float64 loop written here from the
formulas (eq. 2, eq. 22; Burda et al. 2016), on the same per-row draws (RowSeed), for several sample blocks.

The models run in float32 as the tool runs them; everything after the decoder is float64 here, one sample at a time,
so the sums are independent of the tool's blocks, in-place buffers and fused passes (issue #24). 1e-9 relative."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from entropy_elbo import montecarlo
from entropy_elbo.data import iter_batches, make_synthetic
from entropy_elbo.elbo import estimate
from entropy_elbo.models import ModelConfig, build_model
from entropy_elbo.montecarlo import RowSeed, iwae_bound

LOG_2PI = math.log(2 * math.pi)
TOL = 1e-9


def _model(kind: str) -> tuple[torch.nn.Module, np.ndarray]:
    torch.manual_seed(3)
    if kind == "vae1":
        config = ModelConfig(kind="vae1", data_dim=100, latent_dim=20, hidden=(128, 40), activation="leaky_relu",
                             init_log_sigma2=-2.0)
        x = np.random.default_rng(0).normal(size=(40, 100)).astype(np.float32)
    elif kind == "conv":
        config = ModelConfig(kind="conv", data_dim=3 * 8 * 8, latent_dim=4, init_log_sigma2=-1.0,
                             extra={"channels": [4, 8], "in_channels": 3, "image_size": 8})
        x = np.random.default_rng(0).uniform(size=(24, 3 * 8 * 8)).astype(np.float32)
    else:
        config = ModelConfig(kind="vae3", data_dim=10, latent_dim=2, hidden=(16,))
        x = make_synthetic("ring", n=50, seed=0).astype(np.float32)
    return build_model(config).eval(), x


def _draws(model: torch.nn.Module, x: np.ndarray, samples: int, stream: int):
    """Per sample s: (z_s (B, H) float32, nu, log_tau2, mu_s float64 (B, D), log_sigma2_s float64 broadcastable)."""
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        nu, log_tau2 = model.encode(xt)
        eps = RowSeed(7, stream).normals(torch.arange(len(x)), 0, samples, nu.shape[1], torch.float32)
        for s in range(samples):
            z = nu + (0.5 * log_tau2).exp() * eps[s]
            mu, ls = model.decode(z)
            yield (z.double().numpy(), nu.double().numpy(), log_tau2.double().numpy(),
                   mu.reshape(len(x), -1).double().numpy(), np.broadcast_to(ls.double().reshape(
                       len(x), -1).numpy() if ls.dim() > 0 and ls.shape[0] == len(x) else ls.double().numpy(),
                       (len(x), x.shape[1])))


def _loglik(x: np.ndarray, mu: np.ndarray, ls: np.ndarray) -> np.ndarray:
    return -0.5 * (LOG_2PI + ls + (x - mu) ** 2 / np.exp(ls)).sum(1)


def _reference_mc(model: torch.nn.Module, x: np.ndarray, samples: int) -> tuple[float, float]:
    """Mean over rows of mean_s log N(x; mu(z_s), sigma^2(z_s)) - KL, and of mean_s sum_d 0.5 log(2 pi e sigma^2)."""
    xd = x.astype(np.float64)
    ll = np.zeros(len(x))
    ent = np.zeros(len(x))
    for draw in _draws(model, x, samples, 0):
        _, nu, lt, mu, ls = draw
        ll += _loglik(xd, mu, ls) / samples
        ent += 0.5 * (LOG_2PI + 1 + ls).sum(1) / samples
    kl = 0.5 * (nu**2 + np.exp(lt) - lt - 1).sum(1)
    return float((ll - kl).mean()), float(ent.mean())


def _reference_iwae(model: torch.nn.Module, x: np.ndarray, samples: int) -> float:
    """Mean over rows of log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), log-sum-exp in float64."""
    xd = x.astype(np.float64)
    log_w = []
    for z, nu, lt, mu, ls in _draws(model, x, samples, 1):
        prior = -0.5 * (LOG_2PI + z**2).sum(1)
        post = -0.5 * (LOG_2PI + lt + (z - nu) ** 2 / np.exp(lt)).sum(1)
        log_w.append(_loglik(xd, mu, ls) + prior - post)
    w = np.stack(log_w)  # (K, B)
    top = w.max(0)
    return float((top + np.log(np.exp(w - top).sum(0)) - math.log(samples)).mean())


@pytest.mark.parametrize("kind", ["vae1", "conv", "vae3"])
@pytest.mark.parametrize("block", [None, 3_000, 10**9])
def test_mc_elbo_matches_a_plain_float64_loop(kind: str, block: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = _model(kind)
    if block is not None:
        monkeypatch.setattr(montecarlo, "ELEMENTS_PER_BLOCK", block)
    est = estimate(model, iter_batches(x, 16), samples=6, seed=7)
    mc, dec_ent = _reference_mc(model, x, 6)
    assert math.isclose(est.mc_elbo, mc, rel_tol=TOL)
    if kind == "vae3":  # the sampled decoder entropy (eq. 22) and the entropy ELBO built from it
        assert math.isclose(est.entropies["decoder"], dec_ent, rel_tol=TOL)
        lt = model.encode(torch.from_numpy(x))[1].detach().double().numpy()
        enc = float((0.5 * (LOG_2PI + 1 + lt)).sum(1).mean())
        assert math.isclose(est.entropy_elbo, enc - 0.5 * 2 * (LOG_2PI + 1) - dec_ent, rel_tol=TOL)


@pytest.mark.parametrize("kind", ["vae1", "conv", "vae3"])
@pytest.mark.parametrize("block", [None, 3_000, 10**9])
def test_iwae_matches_a_plain_float64_loop(kind: str, block: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = _model(kind)
    if block is not None:
        monkeypatch.setattr(montecarlo, "ELEMENTS_PER_BLOCK", block)
    bound = iwae_bound(model, iter_batches(x, 16), samples=9, seed=7)
    assert math.isclose(bound.value, _reference_iwae(model, x, 9), rel_tol=TOL)


@pytest.mark.parametrize("shape", [(), (5,), (3, 4, 5)])
def test_gaussian_log_likelihood_in_place_leaves_its_inputs(shape: tuple[int, ...]) -> None:
    from entropy_elbo.entropies import gaussian_log_likelihood

    gen = torch.Generator().manual_seed(0)
    x, mu = torch.randn(4, 5, generator=gen), torch.randn(3, 4, 5, generator=gen)
    log_sigma2 = torch.randn(shape, generator=gen)
    before = mu.clone()
    with torch.no_grad():
        got = gaussian_log_likelihood(x, mu, log_sigma2)  # (3, 4)
    ls = np.broadcast_to(log_sigma2.double().numpy(), (3, 4, 5))
    want = -0.5 * (LOG_2PI + ls + (x.double().numpy() - mu.double().numpy()) ** 2 / np.exp(ls)).sum(-1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-13)
    assert torch.equal(mu, before)
    mu.requires_grad_(True)  # the trainer's float32 gradient pass takes the other branch, to the same value
    np.testing.assert_allclose(gaussian_log_likelihood(x, mu, log_sigma2, dtype=None).detach().numpy(), want,
                               rtol=1e-5)
