"""Model families of the paper, all meeting `GaussianVAE`; `build_model` rebuilds one from its config."""

from __future__ import annotations

from entropy_elbo.errors import ModelError
from entropy_elbo.models.config import ModelConfig
from entropy_elbo.models.linear import LinearVAE
from entropy_elbo.models.mlp import MLPVAE
from entropy_elbo.models.protocol import DECODER_VARIANCES, GaussianVAE, VAEBase

MODELS: dict[str, type[VAEBase]] = {"linear": LinearVAE, "vae1": MLPVAE}


def build_model(config: ModelConfig) -> VAEBase:
    """A fresh model of the family and architecture that `config` names."""
    if config.kind not in MODELS:
        raise ModelError(f"model kind {config.kind!r} unknown; use one of {', '.join(MODELS)}")
    if config.decoder_variance not in DECODER_VARIANCES:
        raise ModelError(
            f"decoder variance {config.decoder_variance!r} unknown; use one of {', '.join(DECODER_VARIANCES)}"
        )
    return MODELS[config.kind](config)


__all__ = ["MODELS", "GaussianVAE", "LinearVAE", "MLPVAE", "ModelConfig", "VAEBase", "build_model"]
