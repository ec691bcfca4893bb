"""A user's own VAE and training loss, shared by the monitor's tests (plain loop and Lightning)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)


class BNVAE(nn.Module):
    """A user's own VAE: batch norm and dropout in the encoder, PyTorch-VAE's encode/decode, a learned ln sigma^2."""

    def __init__(self, d: int = 10, h: int = 3, hidden: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.2))
        self.fc_mu, self.fc_var = nn.Linear(hidden, h), nn.Linear(hidden, h)
        self.decoder = nn.Sequential(nn.Linear(h, hidden), nn.ReLU(), nn.Linear(hidden, d))
        self.log_sigma2 = nn.Parameter(torch.zeros(()))

    def encode(self, x: Tensor) -> list[Tensor]:
        trunk = self.encoder(x)
        return [self.fc_mu(trunk), self.fc_var(trunk)]

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)


def user_loss(model: BNVAE, x: Tensor, gen: torch.Generator | None = None) -> Tensor:
    """The user's own negative sampled ELBO (eq. 2), one sample, written by hand (noise from `gen`, else global)."""
    nu, log_tau2 = model.encode(x)
    z = nu + (0.5 * log_tau2).exp() * torch.randn(nu.shape, generator=gen)
    ls2 = model.log_sigma2
    loglik = (-0.5 * (LOG_2PI + ls2 + (x - model.decode(z)).pow(2) / ls2.exp())).sum(-1)
    kl = 0.5 * (nu.pow(2) + log_tau2.exp() - log_tau2 - 1).sum(-1)
    return -(loglik - kl).mean()
