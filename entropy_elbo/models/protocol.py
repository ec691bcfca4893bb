"""The one protocol that every model and every checkpoint adapter meets.

Shapes: B a batch of data points, H latents, D observed dimensions (images keep their own
shape; the likelihood sums over every non-batch dimension).
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

DecoderVariance = Literal["scalar", "per-dim", "network", "fixed"]
DECODER_VARIANCES: tuple[str, ...] = ("scalar", "per-dim", "network", "fixed")


@runtime_checkable
class GaussianVAE(Protocol):
    """A VAE with q(z|x) = N(nu, diag tau^2), p(z) = N(0, diag A), p(x|z) = N(mu(z), diag sigma^2).

    - ``encode(x)`` -> ``(nu, log_tau2)``, each (B, H).
    - ``decode(z)`` -> ``(mu, log_sigma2)``: mu has x's shape, log_sigma2 broadcasts against it
      ((), (D,) or (B, D)-like).
    - ``decoder_log_var(z)`` -> log sigma^2 alone, running only the variance network (VAE-3);
      constant models ignore z.
    - ``prior_log_var`` -> log A, (H,), or None for the standard normal prior.
    - ``encoder_log_var_constant`` -> log tau^2 (H,) when it does not depend on x (linear VAE), else None.
    - ``decoder_variance``: how sigma^2 was parameterized and whether it was learned.
    """

    latent_dim: int
    decoder_variance: DecoderVariance

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]: ...

    def decoder_log_var(self, z: Tensor) -> Tensor: ...

    @property
    def prior_log_var(self) -> Tensor | None: ...

    @property
    def encoder_log_var_constant(self) -> Tensor | None: ...


class VAEBase(torch.nn.Module):
    """Defaults for the protocol's optional parts: a standard normal prior and an x-dependent encoder."""

    latent_dim: int
    decoder_variance: DecoderVariance

    @property
    def prior_log_var(self) -> Tensor | None:
        return None

    @property
    def encoder_log_var_constant(self) -> Tensor | None:
        return None

    def decoder_log_var(self, z: Tensor) -> Tensor:
        return self.decode(z)[1]


def check_protocol(model: object, needs: tuple[str, ...] = ("encode", "decode", "decoder_log_var", "prior_log_var",
                                                           "encoder_log_var_constant", "latent_dim",
                                                           "decoder_variance")) -> None:
    """Refuse a model without the parts of `GaussianVAE` that a pass `needs` (a user's own module, not read yet),
    naming the front door that reads it."""
    if not all(hasattr(model, name) for name in needs):
        from entropy_elbo.errors import EntropyElboError

        raise EntropyElboError(f"model: a {type(model).__name__} is not read yet (this function takes a model that "
                               "meets entropy_elbo.models.GaussianVAE); pass it to entropy_elbo.estimate(model, data) "
                               "or entropy_elbo.collapse(model, data), which read any VAE module")


def constant_log_sigma2(model: GaussianVAE) -> Tensor:
    """log sigma^2 of a decoder variance that does not depend on z (scalar, per-dim or fixed), read once on the
    model's own device: () or (D,), float64 on the CPU, detached."""
    device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    with torch.no_grad():
        return model.decoder_log_var(torch.zeros(1, model.latent_dim, device=device)).detach().double().cpu()
