"""Conv VAE-1 for images (App. D.4, CelebA 64x64x3): the VanillaVAE layout with a learned scalar sigma^2."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from entropy_elbo.errors import ModelError
from entropy_elbo.models.config import ModelConfig
from entropy_elbo.models.mlp import activation
from entropy_elbo.models.protocol import VAEBase

DEFAULT_CHANNELS = (32, 64, 128, 256, 512)
OUTPUTS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "identity": nn.Identity}  # data in [0,1], [-1,1], any


def conv_geometry(config: ModelConfig) -> tuple[int, int, tuple[int, ...], int]:
    """(image channels, image size, conv channels, spatial size after the encoder) from config.extra."""
    channels = tuple(int(c) for c in config.extra.get("channels", DEFAULT_CHANNELS))
    in_ch = int(config.extra.get("in_channels", 3))
    size = int(config.extra.get("image_size", round(math.sqrt(config.data_dim / in_ch))))
    if in_ch * size * size != config.data_dim:
        raise ModelError(f"conv model: data_dim {config.data_dim} is not {in_ch}x{size}x{size}; pass square images")
    if not channels or size % 2 ** len(channels):
        raise ModelError(f"conv model: image size {size} must divide by 2^{len(channels)} (one halving per layer)")
    return in_ch, size, channels, size // 2 ** len(channels)


class ConvVAE(VAEBase):
    """Conv encoder (stride-2 conv + batch norm + LeakyReLU per layer), `fc_mu`/`fc_var` heads,
    transposed-conv decoder back to the image; learned scalar sigma^2; output squashed to the data's range."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        in_ch, size, channels, self.spatial = conv_geometry(config)
        act = config.activation
        self.config = config
        self.latent_dim = h = config.latent_dim
        self.decoder_variance = config.decoder_variance  # type: ignore[assignment]
        self.image_shape = (in_ch, size, size)
        layers: list[nn.Module] = []
        prev = in_ch
        for c in channels:
            layers += [nn.Conv2d(prev, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), activation(act)]
            prev = c
        self.encoder = nn.Sequential(*layers)
        self.top_channels = channels[-1]
        flat = channels[-1] * self.spatial**2
        self.fc_mu = nn.Linear(flat, h)
        self.fc_var = nn.Linear(flat, h)  # log tau^2
        self.decoder_input = nn.Linear(h, flat)
        rev = channels[::-1]
        layers = []
        for a, b in zip(rev[:-1], rev[1:], strict=True):
            layers += [nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(b),
                       activation(act)]
        self.decoder = nn.Sequential(*layers)
        output = config.extra.get("output", "sigmoid")
        if output not in OUTPUTS:
            raise ModelError(f"conv model: output {output!r} unknown; use one of {', '.join(OUTPUTS)}")
        self.final_layer = nn.Sequential(
            nn.ConvTranspose2d(rev[-1], rev[-1], 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(rev[-1]),
            activation(act), nn.Conv2d(rev[-1], in_ch, 3, padding=1), OUTPUTS[output]())
        self.log_sigma2 = nn.Parameter(torch.tensor(float(config.init_log_sigma2)),
                                       requires_grad=config.decoder_variance != "fixed")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        trunk = self.encoder(x.reshape(-1, *self.image_shape)).flatten(1)  # (B, C * s * s)
        return self.fc_mu(trunk), self.fc_var(trunk)

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        c = self.decoder_input(z).reshape(-1, self.top_channels, self.spatial, self.spatial)  # (B, C_top, s, s)
        return self.final_layer(self.decoder(c)), self.log_sigma2  # (B, C, S, S), ()

    def decoder_log_var(self, z: Tensor) -> Tensor:
        return self.log_sigma2
