"""VAE-3 (Def. 3): VAE-1 whose decoder variance sigma_d^2(z) is a separate DNN with positive outputs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from entropy_elbo.models.config import ModelConfig
from entropy_elbo.models.mlp import activation, mlp
from entropy_elbo.models.protocol import VAEBase

MIN_VARIANCE = 1e-6  # floor of sigma^2(z), keeps log sigma^2 finite


class VarianceNet(nn.Module):
    """sigma^2(z) = exp(g_d) * softplus(DNN(z)) + floor: >= 1 hidden layer, positive output (eq. 21).

    The per-dimension gain exp(g_d) scales sigma_d^2 for every z at once, as the linear output layer
    of eq. 35 does; a stationary point in g_d therefore has r_d = 1, the condition of Thm. 3.
    """

    def __init__(self, latent_dim: int, data_dim: int, hidden: list[int], act: str) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("the variance network needs at least one hidden layer")
        self.net = nn.Sequential(mlp([latent_dim, *hidden], act), activation(act), nn.Linear(hidden[-1], data_dim))
        self.log_gain = nn.Parameter(torch.zeros(data_dim))  # g, (D,)
        with torch.no_grad():
            self.net[-1].bias.fill_(0.5413)  # softplus(0.5413) = 1: sigma^2 starts near 1

    def forward(self, z: Tensor) -> Tensor:
        """log sigma^2(z): (B, H) -> (B, D)."""
        var = self.log_gain.exp() * nn.functional.softplus(self.net(z)) + MIN_VARIANCE
        return var.log()


class VAE3(VAEBase):
    """VAE-3 of the paper (Thm. 3): MLP encoder, MLP decoder mean, and a variance network sigma^2(z)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, h, hidden = config.data_dim, config.latent_dim, list(config.hidden)
        var_hidden = [int(v) for v in config.extra.get("variance_hidden", hidden)]
        self.config = config
        self.latent_dim = h
        self.decoder_variance = "network"
        self.encoder = nn.Sequential(mlp([d, *hidden], config.activation), activation(config.activation))
        self.fc_mu = nn.Linear(hidden[-1], h)
        self.fc_var = nn.Linear(hidden[-1], h)  # log tau^2
        self.decoder = mlp([h, *hidden[::-1], d], config.activation)
        self.variance_net = VarianceNet(h, d, var_hidden[::-1], config.activation)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        trunk = self.encoder(x)  # (B, hidden[-1])
        return self.fc_mu(trunk), self.fc_var(trunk)

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.decoder(z), self.variance_net(z)  # (B, D), (B, D)

    def decoder_log_var(self, z: Tensor) -> Tensor:
        """Runs the variance network alone (Thm. 3, eq. 22 needs no decoder mean)."""
        return self.variance_net(z)
