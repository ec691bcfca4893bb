"""The reading rule's margin against a convention (readings.py): near-identical functions (ReLU vs LeakyReLU's
0.01 slope) fit an unconverged model a little differently by chance, which at D = 784 is nats per data point."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_checkpoints_wild import run_json, save_data
from test_real_checkpoints import EXAMPLES_VAE, OffsetModel
from torch.distributions import Normal

from entropy_elbo.checkpoints.readings import DIM_MARGIN, Reading, choose


def test_an_amendment_must_beat_the_convention_by_a_margin_per_observed_dimension() -> None:
    d = 100
    x = torch.randn(256, d)
    conv, other = Reading("relu", "sigmoid"), Reading("leaky_relu", "sigmoid")
    for offset, want in ((0.1, conv), (0.2, other)):  # score gap D offset^2 / 2: 0.5 and 2 nats vs D x 0.01 = 1
        assert d * offset**2 / 2 != pytest.approx(DIM_MARGIN * d)
        got = choose(lambda r, o=offset: OffsetModel({conv: o, other: 0.0}[r], x), [conv, other], x, "a convention")
        assert got[0] == want
    near, far = Reading("relu", "tanh"), Reading("tanh", "tanh")  # near: 1 choice from conv; far: 2
    offsets = {conv: 0.3, near: 0.2, far: 0.0}  # near beats conv, far beats near: no amendment, far clearly best
    got = choose(lambda r: OffsetModel(offsets[r], x), list(offsets), x, "the usual reading")
    assert got[0] == far and got[2].startswith("the usual reading set aside: another reading clearly beats it; ")


def test_briefly_trained_pytorch_examples_vae_keeps_relu_and_collapse_matches_encode(tmp_path: Path) -> None:
    """pytorch/examples' layout at MNIST's D = 784, a few Adam steps of its BCE loss: LeakyReLU would fit these
    rows a little better by chance; the entropies must be those of the model's own encode() (ReLU)."""
    namespace: dict[str, object] = {}
    exec(compile(EXAMPLES_VAE, "examples_vae.py", "exec"), namespace)  # noqa: S102 -- the test's own model code
    gen = torch.Generator().manual_seed(0)
    proto = torch.rand(5, 784, generator=gen) > 0.6
    x = proto[torch.randint(0, 5, (300,), generator=gen)].float()
    flip = torch.rand(x.shape, generator=gen) < 0.05
    x = torch.where(flip, 1 - x, x)
    torch.manual_seed(0)
    vae = namespace["VAE"](d=784, h=8, hidden=64)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    for _ in range(25):
        opt.zero_grad()
        (-vae(x)).backward()
        opt.step()
    path = tmp_path / "vae.pth"
    torch.save(vae.state_dict(), path)
    col = run_json("collapse", path, "--data", save_data(tmp_path, x))
    with torch.no_grad():
        log_tau2 = vae.encode(x)[1].double()
    entropies = Normal(0.0, (0.5 * log_tau2).exp()).entropy().mean(0)
    assert col["mean_entropy"] == pytest.approx(entropies.tolist(), abs=1e-4)
    assert any("hidden activation relu" in a["what"] for a in col["assumptions"])
