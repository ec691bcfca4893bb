"""VAE-1: MLP encoder with mean and log-variance heads, MLP decoder, learned scalar or per-dim sigma^2."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from entropy_elbo.models.config import ModelConfig
from entropy_elbo.models.protocol import VAEBase


def activation(name: str) -> nn.Module:
    """The named activation module (leaky_relu with PyTorch's default slope)."""
    return {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "elu": nn.ELU, "softplus": nn.Softplus}[
        name
    ]()


def mlp(sizes: list[int], act: str) -> nn.Sequential:
    """Linear layers of the given sizes with the activation between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation(act))
    return nn.Sequential(*layers)


class MLPVAE(VAEBase):
    """VAE-1 of the paper (Appendix D): two hidden layers of 50 ReLU units by default."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, h, hidden = config.data_dim, config.latent_dim, list(config.hidden)
        self.config = config
        self.latent_dim = h
        self.decoder_variance = config.decoder_variance  # type: ignore[assignment]
        self.encoder = nn.Sequential(mlp([d, *hidden], config.activation), activation(config.activation))
        self.fc_mu = nn.Linear(hidden[-1], h)
        self.fc_var = nn.Linear(hidden[-1], h)  # log tau^2
        self.decoder = mlp([h, *hidden[::-1], d], config.activation)
        shape = (d,) if config.decoder_variance == "per-dim" else ()
        self.log_sigma2 = nn.Parameter(torch.full(shape, float(config.init_log_sigma2)),
                                       requires_grad=config.decoder_variance != "fixed")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)  # (B, D): an image stack (B, C, H, W) enters flat
        trunk = self.encoder(x)  # (B, hidden[-1])
        return self.fc_mu(trunk), self.fc_var(trunk)

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.decoder(z), self.log_sigma2

    def decoder_log_var(self, z: Tensor) -> Tensor:
        return self.log_sigma2
