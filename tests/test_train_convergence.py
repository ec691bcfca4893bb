"""Reduced verification runs (Fig. 1): after training, |MC ELBO - entropy ELBO| / |MC ELBO| < 1% (Thm. 1-3).

The MC ELBO (200 samples per point) and the entropy ELBO are computed by `estimate` over the training data;
its sampling standard error (data fixed) must be small against the 1% tolerance for the check to mean anything.
"""

from __future__ import annotations

import pytest
import torch

from entropy_elbo.data import make_synthetic
from entropy_elbo.estimate import estimate
from entropy_elbo.models import build_model, model_config
from entropy_elbo.train import TrainConfig, train

torch.set_num_threads(1)

# VAE-1 and VAE-2 need more steps than this budget allows: at 600 steps sigma^2 still lags its optimum (r ~ 0.95).
CASES = {  # model, data, points, epochs, batch, lr, ln sigma^2 at start
    "linear": ("ppca", 2000, 300, 1000, 3e-2, 0.0),
    "vae3": ("ring", 1000, 600, 1000, 1e-2, -2.0),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_trained_model_elbo_equals_its_entropies(kind: str) -> None:
    data, n, epochs, batch, lr, init = CASES[kind]
    x = make_synthetic(data, n=n, seed=0)
    torch.manual_seed(0)
    model = build_model(model_config(kind, (10,), 2, init_log_sigma2=init))
    train(model, x, TrainConfig(epochs=epochs, batch_size=batch, lr=lr, samples=10))
    est = estimate(model, [x], samples=200, generator=torch.Generator().manual_seed(1))
    assert 3 * est.mc_sampling_stderr < 0.002 * abs(est.mc_elbo)  # noise far below the tolerance
    assert abs(est.relative_difference) < 0.01, est.to_dict()
