"""PyTorch-VAE's VanillaVAE / BetaVAE, trained and saved as `last.ckpt` by the real pytorch-lightning Trainer.

The models are written here in PyTorch-VAE's conventions (`encode(x) -> [mu, log_var]`, `decode(z)`, `fc_mu`,
`fc_var`, a LightningModule holding it as `self.model` like its `VAEXperiment`, `kld_weight` in the hyper-parameters).
The tool reads them with no flags; its numbers are checked against torch.distributions on the model's own outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from test_checkpoints_wild import assert_within_4_se, independent_mc_elbo, one_line_error, run, run_json
from test_peers_pythae import Evil
from torch import nn
from torch.distributions import Normal
from torch.utils.data import DataLoader, TensorDataset

from entropy_elbo.checkpoints.torchfiles import lightning_implied_variance

C, S, H, N = 1, 8, 3, 256  # one channel, 8x8 images, 3 latents
D = C * S * S


class VanillaVAE(nn.Module):
    """PyTorch-VAE's VanillaVAE layout, small: conv blocks 4 -> 8, LeakyReLU, Tanh output."""

    def __init__(self, hidden: tuple[int, ...] = (4, 8)) -> None:
        super().__init__()
        blocks, prev = [], C
        for h in hidden:
            blocks.append(nn.Sequential(nn.Conv2d(prev, h, 3, stride=2, padding=1), nn.BatchNorm2d(h), nn.LeakyReLU()))
            prev = h
        self.encoder = nn.Sequential(*blocks)
        self.side = S // 2 ** len(hidden)
        self.fc_mu = nn.Linear(hidden[-1] * self.side**2, H)
        self.fc_var = nn.Linear(hidden[-1] * self.side**2, H)
        self.decoder_input = nn.Linear(H, hidden[-1] * self.side**2)
        rev = hidden[::-1]
        self.decoder = nn.Sequential(*[nn.Sequential(
            nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(b), nn.LeakyReLU())
            for a, b in zip(rev[:-1], rev[1:], strict=True)])
        self.final_layer = nn.Sequential(
            nn.ConvTranspose2d(rev[-1], rev[-1], 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(rev[-1]),
            nn.LeakyReLU(), nn.Conv2d(rev[-1], C, 3, padding=1), nn.Tanh())
        self.top = hidden[-1]

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        r = torch.flatten(self.encoder(x), start_dim=1)
        return [self.fc_mu(r), self.fc_var(r)]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.decoder(self.decoder_input(z).view(-1, self.top, self.side, self.side)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        mu, log_var = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        return [self.decode(z), x, mu, log_var]

    def loss_function(self, recons: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
                      kld_weight: float, beta: float = 1.0) -> torch.Tensor:
        kld = torch.mean(-0.5 * torch.sum(1 + log_var - mu**2 - log_var.exp(), dim=1), dim=0)
        return nn.functional.mse_loss(recons, x) + beta * kld_weight * kld


class VAEXperiment(pl.LightningModule):
    """Like PyTorch-VAE's: the VAE as self.model, the experiment's params as hyper-parameters."""

    def __init__(self, vae_model: nn.Module, params: dict) -> None:
        super().__init__()
        self.model = vae_model
        self.params = params
        self.save_hyperparameters(params)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        beta = self.params.get("beta", 1.0) if self.params.get("loss_type") == "H" else 1.0
        return self.model.loss_function(*self.model(batch[0]), kld_weight=self.params["kld_weight"], beta=beta)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.params["LR"])


def images(seed: int = 0) -> torch.Tensor:
    """Smooth blobs in [-1, 1], PyTorch-VAE's data range."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.linspace(-1, 1, S)
    centre = torch.rand(N, 2, generator=gen) * 1.6 - 0.8
    d2 = (grid.view(1, S, 1) - centre[:, 0].view(N, 1, 1)) ** 2 + (grid.view(1, 1, S) - centre[:, 1].view(N, 1, 1)) ** 2
    return (2 * torch.exp(-4 * d2) - 1).unsqueeze(1)  # (N, 1, S, S)


def trained(tmp_path: Path, params: dict) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    experiment = VAEXperiment(VanillaVAE(), params)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    trainer = pl.Trainer(max_epochs=3, callbacks=[ckpt], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(experiment, DataLoader(TensorDataset(images()), batch_size=64))
    return experiment.model.eval(), tmp_path / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize(("params", "implied"), [
    ({"kld_weight": 0.00025, "LR": 0.005}, D * 0.00025 / 2),
    ({"kld_weight": 0.01, "LR": 0.005, "beta": 4.0, "loss_type": "H"}, D * 0.01 * 4.0 / 2),
])
def test_pytorch_vae_lightning_checkpoint_no_flags(tmp_path: Path, params: dict, implied: float) -> None:
    model, ckpt = trained(tmp_path, params)
    x = images(seed=1)
    data = tmp_path / "x.npy"
    np.save(data, x.numpy())
    info = run_json("inspect", ckpt)
    assert (info["fmt"], info["h"], info["d"]) == ("lightning", H, D)
    assert info["decoder"]["kind"] == "fixed" and info["decoder"]["implied"] == pytest.approx(implied, rel=1e-12)

    got = run_json("collapse", ckpt, "--data", data)
    with torch.no_grad():
        log_var = model.encode(x)[1].double()
    mine = Normal(0.0, (0.5 * log_var).exp()).entropy().mean(0)
    rows = sorted(got["latents"], key=lambda r: r["latent"])
    assert [r["mean_encoder_entropy"] for r in rows] == pytest.approx(mine.tolist(), rel=1e-4)

    line = one_line_error(run("estimate", ckpt, "--data", data))
    assert f"pass --decoder-variance {implied:g} (what its loss implies)" in line and "optimal" in line

    est = run_json("estimate", ckpt, "--data", data, "--decoder-variance", f"{implied!r}", "--samples", "64")
    want, se = independent_mc_elbo(model.encode, model.decode, torch.tensor(implied), x, 64)
    assert_within_4_se(est, want, se)


@pytest.mark.parametrize(("hparams", "implied"), [
    ({"params": {"M_N": 0.005, "LR": 0.001}}, D * 0.005 / 2),  # nested under save_hyperparameters' argument name
    ({"kld_weight": 0.002, "beta": 10, "loss_type": "H"}, D * 0.002 * 10 / 2),
    ({"kld_weight": 0.002, "beta": 10, "loss_type": "B", "gamma": 1000.0}, None),  # a KL capacity target
    ({"kld_weight": 0.002, "beta": 4}, None),  # BetaVAE's default loss_type is 'B'
    ({"model_params": {"name": "LogCoshVAE"}, "exp_params": {"kld_weight": 0.002}}, None),  # not an MSE loss
])
def test_implied_variance_from_hyper_parameters(hparams: dict, implied: float | None) -> None:
    value, why = lightning_implied_variance(hparams, D)
    assert value == (None if implied is None else pytest.approx(implied, rel=1e-12))
    assert ("variance is implied" in why or "no sigma^2 is implied" in why) == (implied is None)
    assert lightning_implied_variance({"LR": 0.001}, D) is None  # no KL weight: nothing to say


def test_hyper_parameters_holding_objects_run_no_code(tmp_path: Path) -> None:
    _, ckpt = trained(tmp_path, {"kld_weight": 0.00025, "LR": 0.005})
    state = torch.load(ckpt, weights_only=True)
    state["hyper_parameters"]["callback"] = Evil(tmp_path / "ran.txt")
    torch.save(state, ckpt)
    line = one_line_error(run("inspect", ckpt))
    assert "--trust-code" in line and str(ckpt) in line
    assert not (tmp_path / "ran.txt").exists()
