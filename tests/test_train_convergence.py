"""Reduced verification runs (Fig. 1): after training, |MC ELBO - entropy ELBO| / |MC ELBO| < 1% (Thm. 1-3).

The MC ELBO (400 samples per point) and the entropy ELBO are computed by `estimate` over the training data;
its sampling standard error (data fixed) must be small against the 1% tolerance for the check to mean anything.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entropy_elbo.data import make_synthetic
from entropy_elbo.elbo import estimate
from entropy_elbo.models import build_model, model_config
from entropy_elbo.train import TrainConfig, parameter_groups, train

# VAE-1 and VAE-2 pass only because ln sigma^2 (and ln A) train at 10x lr: with one lr for all (120 epochs) their
# relative gap was 22-30% (sigma^2 lags its optimum, r ~ 0.75).
CASES = {  # model, data, points, epochs, batch, lr, ln sigma^2 at start
    "linear": ("ppca", 2000, 300, 1000, 3e-2, 0.0),
    "vae1": ("ppca", 1000, 200, 100, 5e-3, 0.0),
    "vae2": ("ring", 1000, 200, 100, 5e-3, 0.0),
    "vae3": ("ring", 1000, 600, 1000, 1e-2, -2.0),
}


@pytest.mark.slow  # hundreds of epochs per model: `make test-all`
@pytest.mark.parametrize("kind", sorted(CASES))
def test_trained_model_elbo_equals_its_entropies(kind: str) -> None:
    data, n, epochs, batch, lr, init = CASES[kind]
    x = make_synthetic(data, n=n, seed=0)
    torch.manual_seed(0)
    model = build_model(model_config(kind, (10,), 2, init_log_sigma2=init))
    train(model, x, TrainConfig(epochs=epochs, batch_size=batch, lr=lr, samples=10))
    est = estimate(model, [x], samples=400, generator=torch.Generator().manual_seed(1))
    assert 3 * est.mc_sampling_stderr < 0.002 * abs(est.mc_elbo)  # noise far below the tolerance
    assert abs(est.relative_difference) < 0.01, est.to_dict()
    if kind == "vae3":  # at this scale its a_2 ends near 1.05; the gap still passes (its r is per z, see Thm. 3)
        return
    # near a stationary point: sigma^2 at its optimum (r = 1) and the aggregate posterior at the prior's scale (a_h = 1)
    assert abs(est.stationarity["r"] - 1) < 0.01, est.stationarity
    assert max(abs(a - 1) for a in est.stationarity["a"]) < 0.05, est.stationarity


def test_variance_parameters_train_in_their_own_group_at_the_larger_lr() -> None:
    model = build_model(model_config("vae2", (10,), 2))
    groups = parameter_groups(model, TrainConfig(variance_lr_factor=10.0))
    factor = {id(p): g["lr_factor"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(factor) == sum(len(g["params"]) for g in groups) == len(named)  # every parameter trained once
    assert factor[id(named["log_sigma2"])] == factor[id(named["logalpha2"])] == 10.0
    assert all(factor[id(p)] == 1.0 for n, p in named.items() if n not in ("log_sigma2", "logalpha2"))
    assert len(parameter_groups(model, TrainConfig(variance_lr_factor=1.0))) == 1


def test_the_variance_scalars_take_their_larger_step_from_the_first_step() -> None:
    # Adam's first step moves every parameter by exactly its lr (m / sqrt(v) = sign of the gradient)
    x = make_synthetic("ppca", n=200, seed=0)
    torch.manual_seed(0)
    model = build_model(model_config("vae2", (10,), 2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, x, TrainConfig(epochs=1, batch_size=200, lr=1e-3, samples=1, decay_fraction=0.3))  # no decay yet
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}
    assert moved["log_sigma2"] == pytest.approx(1e-2, rel=1e-3)  # 10x lr in the first epoch, not only in the decay
    assert moved["logalpha2"] == pytest.approx(1e-2, rel=1e-3)
    assert moved["fc_mu.bias"] == pytest.approx(1e-3, rel=1e-3)


def test_batch_norm_keeps_its_running_statistics_in_the_decay_phase() -> None:
    # the saved model is measured in eval mode; in the decay phase it is also trained that way (`train_mode`)
    x = np.random.default_rng(0).random((64, 1, 8, 8), dtype=np.float32)
    torch.manual_seed(0)
    model = build_model(model_config("conv", (1, 8, 8), 2, extra={"channels": [4, 8]}))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    seen: list[tuple[list[torch.Tensor], bool, bool]] = []

    def record(row: dict) -> None:
        others = [m.training for m in model.modules() if not isinstance(m, torch.nn.BatchNorm2d)]
        seen.append(([m.running_mean.clone() for m in norms], any(m.training for m in norms), all(others)))

    train(model, x, TrainConfig(epochs=4, batch_size=16, samples=1, decay_fraction=0.5), on_epoch=record)
    assert norms and [s[1:] for s in seen] == [(True, True)] * 2 + [(False, True)] * 2
    assert not torch.equal(seen[0][0][0], seen[1][0][0])  # epochs 0, 1: batch statistics, running averages move
    assert all(torch.equal(a, b) for a, b in zip(seen[1][0], seen[3][0], strict=True))  # epochs 2, 3: kept
