"""Linear VAE (eq. 18/19): encoder V(x - mu0) with one learned tau per latent, decoder Wz + mu0."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from entropy_elbo.models.config import ModelConfig
from entropy_elbo.models.protocol import VAEBase


class LinearVAE(VAEBase):
    """pPCA as a VAE; its stationary points are pPCA's maximum-likelihood solutions (Lucas et al. 2019)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, h = config.data_dim, config.latent_dim
        self.config = config
        self.latent_dim = h
        self.decoder_variance = "fixed" if config.decoder_variance == "fixed" else "scalar"
        self.mu0 = nn.Parameter(torch.zeros(d))
        self.V = nn.Parameter(torch.randn(h, d) / d**0.5)
        self.W = nn.Parameter(torch.randn(d, h) / h**0.5)
        self.log_tau2 = nn.Parameter(torch.zeros(h))
        self.log_sigma2 = nn.Parameter(torch.tensor(float(config.init_log_sigma2)),
                                       requires_grad=self.decoder_variance != "fixed")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)  # (B, D): an image stack (B, C, H, W) enters flat
        nu = (x - self.mu0) @ self.V.T  # (B, H)
        return nu, self.log_tau2.expand_as(nu)

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z @ self.W.T + self.mu0, self.log_sigma2  # (B, D), ()

    @property
    def encoder_log_var_constant(self) -> Tensor:
        return self.log_tau2

    def ppca(self) -> tuple[Tensor, Tensor, Tensor]:
        """The pPCA model this VAE's decoder defines: (W, mu0, sigma^2) of eq. 26."""
        return self.W, self.mu0, self.log_sigma2.exp()
