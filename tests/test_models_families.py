"""VAE-2, VAE-3 and the conv VAE meet the protocol; the gap identity holds at random parameters (eq. 76)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from entropy_elbo.checkpoints import load_model, save_checkpoint
from entropy_elbo.elbo import estimate
from entropy_elbo.models import build_model, model_config


def randomized(kind: str, d: int = 6, h: int = 3, seed: int = 0, **kw: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(model_config(kind, (d,), h, hidden=(16, 12), **kw))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def by_hand(model: torch.nn.Module, x: torch.Tensor, eps: torch.Tensor) -> dict[str, float]:
    """MC ELBO with torch.distributions, entropy ELBO, r_d and a_h from the same samples eps (S, N, H)."""
    nu, log_tau2 = (t.double() for t in model.encode(x))
    tau = (0.5 * log_tau2).exp()
    z = nu + tau * eps  # (S, N, H)
    mu, log_s2 = model.decode(z.reshape(-1, z.shape[-1]).float())
    mu = mu.double().reshape(*z.shape[:2], -1)
    s = (0.5 * log_s2.double()).exp().expand(mu.shape[-1]) if log_s2.dim() <= 1 else \
        (0.5 * log_s2.double()).exp().reshape(mu.shape)
    prior_sd = torch.ones_like(nu) if model.prior_log_var is None else \
        (0.5 * model.prior_log_var.double()).exp().expand_as(nu)
    loglik = Normal(mu, s).log_prob(x.double()).sum(-1).mean(0)  # (N,)
    kl = kl_divergence(Normal(nu, tau), Normal(torch.zeros_like(nu), prior_sd)).sum(-1)
    enc = Normal(nu, tau).entropy().sum(-1).mean()
    prior = Normal(torch.zeros_like(nu[0]), prior_sd[0]).entropy().sum()
    dec = Normal(mu, s.expand_as(mu)).entropy().sum(-1).mean()
    r_d = ((x.double() - mu) ** 2 / s**2).mean((0, 1))  # (D,)
    a_h = ((nu**2 + tau**2) / prior_sd**2).mean(0)  # (H,)
    return {"mc": float((loglik - kl).mean()), "entropy": float(enc - prior - dec),
            "gap": float(0.5 * (1 - r_d).sum() + 0.5 * (1 - a_h).sum())}


@pytest.mark.parametrize("kind", ["vae2", "vae3"])
def test_gap_identity_at_random_parameters(kind: str) -> None:
    model = randomized(kind)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(300, 6, generator=gen)
    eps = torch.randn(20, 300, 3, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        got = by_hand(model, x, eps)
    assert abs(got["mc"] - got["entropy"] - got["gap"]) < 1e-6 * max(1.0, abs(got["mc"]))
    est = estimate(model, [x[:128], x[128:]], samples=20, generator=torch.Generator().manual_seed(3))
    assert abs(est.mc_elbo - est.entropy_elbo - est.stationarity["gap"]) < 1e-6 * max(1.0, abs(est.mc_elbo))
    # the library's estimate agrees with the hand computation within its sampling error
    assert abs(est.mc_elbo - got["mc"]) < 5 * math.hypot(est.mc_sampling_stderr, 0.02 * est.mc_sampling_stderr)
    if kind == "vae2":  # closed form: no sampling in the entropy ELBO
        assert est.entropy_elbo == pytest.approx(got["entropy"], rel=1e-6)
    else:  # VAE-3: the decoder entropy is sampled (eq. 22)
        assert abs(est.entropy_elbo - got["entropy"]) < 5 * est.decoder_entropy_stderr


def test_vae2_constraint_is_a_parametrization_the_optimizer_updates() -> None:
    model = randomized("vae2")
    first = model.decoder[0]
    assert torch.nn.utils.parametrize.is_parametrized(first, "weight")
    assert torch.allclose(first.weight.norm(dim=0), torch.ones(3), atol=1e-6)
    original = first.parametrizations.weight.original
    assert any(p is original for p in model.parameters())
    assert any(p is model.logalpha2 for p in model.parameters())
    before = original.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.decode(torch.randn(5, 3))[0].sum().backward()
    opt.step()
    assert not torch.equal(before, original.detach())
    assert torch.allclose(first.weight.norm(dim=0), torch.ones(3), atol=1e-6)  # still unit after the step
    assert model.prior_log_var is model.logalpha2


def test_vae3_variance_network_runs_alone_and_is_positive() -> None:
    model = randomized("vae3")
    assert model.decoder_variance == "network"
    assert len([m for m in model.variance_net.net.modules() if isinstance(m, torch.nn.Linear)]) >= 2
    calls = []
    model.decoder.register_forward_hook(lambda *a: calls.append(1))
    z = torch.randn(7, 3) * 50
    log_var = model.decoder_log_var(z)
    assert calls == [] and log_var.shape == (7, 6) and torch.isfinite(log_var).all()
    assert torch.equal(log_var, model.decode(z)[1])


@pytest.mark.parametrize("kind", ["vae2", "vae3", "conv"])
def test_checkpoint_round_trip(tmp_path, kind: str) -> None:
    if kind == "conv":
        torch.manual_seed(0)
        model = build_model(model_config("conv", (3, 16, 16), 4, extra={"channels": [4, 8]})).eval()
        x = torch.rand(5, 3, 16, 16)
    else:
        model, x = randomized(kind), torch.randn(5, 6)
    save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors").model
    assert type(loaded) is type(model)
    for a, b in zip(model.encode(x) + model.decode(model.encode(x)[0]), loaded.encode(x) +
                    loaded.decode(loaded.encode(x)[0]), strict=True):
        assert torch.equal(a, b)


def test_conv_output_range_matches_images() -> None:
    torch.manual_seed(0)
    model = build_model(model_config("conv", (3, 32, 32), 8, extra={"channels": [4, 8, 8]})).eval()
    mu, log_s2 = model.decode(torch.randn(4, 8) * 10)
    assert mu.shape == (4, 3, 32, 32) and mu.min() >= 0 and mu.max() <= 1
    assert log_s2.requires_grad and log_s2.shape == ()
