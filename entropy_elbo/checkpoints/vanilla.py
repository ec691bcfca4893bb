"""PyTorch-VAE's VanillaVAE (the conv VAE-1 layout of App. D.4), rebuilt from a state_dict's names and shapes.

The layout: encoder blocks `encoder.i` = (Conv2d 3x3 stride 2, BatchNorm2d, LeakyReLU); heads `fc_mu`, `fc_var`
(log-variance); `decoder_input`; decoder blocks `decoder.i` = (ConvTranspose2d 3x3 stride 2, BatchNorm2d,
LeakyReLU); `final_layer` = (ConvTranspose2d, BatchNorm2d, LeakyReLU, Conv2d 3x3, Tanh). Strides, activations and
the Tanh output are not in the weights: they are this layout's, and a file whose keys or shapes differ from it in
any way is not taken for it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import Tensor, nn

from entropy_elbo.checkpoints.introspect import DECODER_VAR_NAMES
from entropy_elbo.checkpoints.raw import RawCheckpoint
from entropy_elbo.checkpoints.source import Built, Source

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.options import LoadOptions


class VanillaLayout(nn.Module):
    """encode(x) -> [mu, log_var], decode(z) -> image in [-1, 1], as PyTorch-VAE's VanillaVAE."""

    def __init__(self, in_channels: int, out_channels: int, latent_dim: int, hidden: list[int], spatial: int) -> None:
        super().__init__()
        self.top, self.spatial = hidden[-1], spatial
        size = spatial * 2 ** len(hidden)
        self.input_shape = (in_channels, size, size)
        blocks, prev = [], in_channels
        for c in hidden:
            blocks.append(nn.Sequential(nn.Conv2d(prev, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.LeakyReLU()))
            prev = c
        self.encoder = nn.Sequential(*blocks)
        flat = hidden[-1] * spatial**2
        self.fc_mu, self.fc_var = nn.Linear(flat, latent_dim), nn.Linear(flat, latent_dim)
        self.decoder_input = nn.Linear(latent_dim, flat)
        rev = hidden[::-1]
        self.decoder = nn.Sequential(*[
            nn.Sequential(nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(b),
                          nn.LeakyReLU())
            for a, b in zip(rev[:-1], rev[1:], strict=True)])
        self.final_layer = nn.Sequential(
            nn.ConvTranspose2d(rev[-1], rev[-1], 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(rev[-1]),
            nn.LeakyReLU(), nn.Conv2d(rev[-1], out_channels, 3, padding=1), nn.Tanh())

    def encode(self, x: Tensor) -> list[Tensor]:
        h = self.encoder(x.reshape(-1, *self.input_shape)).flatten(1)  # (B, C_top * s * s)
        return [self.fc_mu(h), self.fc_var(h)]

    def decode(self, z: Tensor) -> Tensor:
        h = self.decoder_input(z).view(-1, self.top, self.spatial, self.spatial)
        return self.final_layer(self.decoder(h))  # (B, C, S, S)


def vanilla_from_shapes(state: dict[str, Tensor]) -> VanillaLayout | None:
    """The VanillaVAE that `state` fits exactly (every key and shape), loaded with it; None when it fits none.
    A top-level decoder variance beside it (the paper authors' model_CelebA.py `logsigma2`) is kept as a buffer."""
    extra = {k: v for k, v in state.items() if "." not in k and k.lower() in DECODER_VAR_NAMES}
    state = {k: v for k, v in state.items() if k not in extra}
    first = state.get("encoder.0.0.weight")
    if first is None or first.dim() != 4 or "fc_mu.weight" not in state or "final_layer.3.weight" not in state:
        return None
    hidden = []
    while f"encoder.{len(hidden)}.0.weight" in state:
        hidden.append(int(state[f"encoder.{len(hidden)}.0.weight"].shape[0]))
    flat, latent = int(state["fc_mu.weight"].shape[1]), int(state["fc_mu.weight"].shape[0])
    spatial = math.isqrt(flat // hidden[-1])
    if spatial == 0 or hidden[-1] * spatial**2 != flat:
        return None
    module = VanillaLayout(int(first.shape[1]), int(state["final_layer.3.weight"].shape[0]), latent, hidden, spatial)
    want = module.state_dict()
    if set(want) != set(state) or any(tuple(want[k].shape) != tuple(state[k].shape) for k in want):
        return None
    module.load_state_dict(state, strict=True)
    for name, value in extra.items():
        module.register_buffer(name, value.detach().clone())
    return module.eval()


class VanillaSource(Source):
    """A state_dict that fits PyTorch-VAE's VanillaVAE exactly, rebuilt as that layout and run through it."""

    name = "PyTorch-VAE VanillaVAE layout"

    def recognise(self, raw: RawCheckpoint, options: LoadOptions) -> bool:
        return True

    def build(self, raw: RawCheckpoint, options: LoadOptions, source: str) -> Built | None:
        module = vanilla_from_shapes(raw.state)
        if module is None:
            return None
        note = (f"architecture read from shapes: {len(module.encoder)} conv blocks, input "
                f"{'x'.join(map(str, module.input_shape))}, 3x3 stride-2 convolutions, LeakyReLU, Tanh output "
                "(PyTorch-VAE's VanillaVAE); pass --model FILE.py:NAME if yours differs")
        return Built(module, "PyTorch-VAE VanillaVAE layout read from shapes", raw.state, notes=[note])
