"""VAE-2 (Def. 2): VAE-1 with a learnable diagonal prior N(0, A) and unit-norm columns of the first decoder weight."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from entropy_elbo.models.config import ModelConfig
from entropy_elbo.models.mlp import MLPVAE


class UnitColumns(nn.Module):
    """Parametrization W -> W / ||W_h|| column-wise, so every column of W has unit length (eq. 6)."""

    def forward(self, w: Tensor) -> Tensor:  # (out, H)
        return w / w.norm(dim=0, keepdim=True).clamp_min(1e-12)


class VAE2(MLPVAE):
    """VAE-2 of the paper: prior variances `logalpha2` (ln alpha_h^2) learned with the rest (Thm. 1, eq. 8).

    The unit-norm constraint is a `torch.nn.utils.parametrize` parametrization of `decoder[0].weight`:
    the optimizer keeps updating the unconstrained `original` tensor, never a detached copy.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.logalpha2 = nn.Parameter(torch.zeros(config.latent_dim))  # ln A, (H,)
        first = self.decoder[0]
        with torch.no_grad():  # start from unit columns so that `original` and the constrained weight agree
            first.weight.copy_(UnitColumns()(first.weight))
        parametrize.register_parametrization(first, "weight", UnitColumns())

    @property
    def prior_log_var(self) -> Tensor:
        return self.logalpha2
