"""Model families of the paper, all meeting `GaussianVAE`; `build_model` rebuilds one from its config."""

from __future__ import annotations

import torch

from entropy_elbo.errors import ModelError
from entropy_elbo.limits import check_memory
from entropy_elbo.models.config import ModelConfig
from entropy_elbo.models.conv import ConvVAE
from entropy_elbo.models.linear import LinearVAE
from entropy_elbo.models.mlp import MLPVAE
from entropy_elbo.models.protocol import DECODER_VARIANCES, GaussianVAE, VAEBase
from entropy_elbo.models.vae2 import VAE2
from entropy_elbo.models.vae3 import VAE3

MODELS: dict[str, type[VAEBase]] = {"linear": LinearVAE, "vae1": MLPVAE, "vae2": VAE2, "vae3": VAE3, "conv": ConvVAE}


def model_shell(config: ModelConfig) -> VAEBase:
    """The model `config` names, built on the meta device: every shape and the weight count, no memory taken."""
    if config.kind not in MODELS:
        raise ModelError(f"model kind {config.kind!r} unknown; use one of {', '.join(MODELS)}")
    if config.decoder_variance not in DECODER_VARIANCES:
        raise ModelError(
            f"decoder variance {config.decoder_variance!r} unknown; use one of {', '.join(DECODER_VARIANCES)}"
        )
    try:
        with torch.device("meta"):
            return MODELS[config.kind](config)
    except (RuntimeError, ValueError, TypeError, IndexError, OverflowError) as err:
        raise ModelError(f"model {config.kind}: cannot be built from its config ({err})") from None


def check_model_size(config: ModelConfig, *, copies: int = 1, source: str = "model") -> None:
    """Refuse, before anything is allocated, a model whose float32 weights times `copies` (4 for training: the
    weights, their gradients and Adam's two moments) exceed the memory budget; the line names its sizes."""
    weights = sum(t.numel() for t in model_shell(config).state_dict().values())
    channels = f", channels {config.extra['channels']}" if "channels" in config.extra else ""
    check_memory(4 * copies * weights, f"{source}: {config.kind} with layers {list(config.hidden)}{channels}, "
                 f"H={config.latent_dim}, D={config.data_dim} ({weights:,} weights)",
                 "pass smaller --hidden or --latents", ModelError)


def check_step_size(config: ModelConfig, samples: int, rows: int, *, source: str) -> None:
    """Refuse a training step whose float32 activations (samples x rows x every layer's width, kept for the backward
    pass and their gradients: about 3 copies) exceed the memory budget, before training starts."""
    widths = config.data_dim + config.latent_dim + sum(
        t.shape[0] for t in model_shell(config).parameters() if t.dim() >= 2)
    check_memory(3 * 4 * samples * rows * widths, f"{source}: a step of {samples:,} samples x {rows:,} rows x "
                 f"{widths:,} activations", "pass fewer --samples or a smaller --batch-size", ModelError)


def build_model(config: ModelConfig, *, source: str = "model") -> VAEBase:
    """A fresh model of the family and architecture that `config` names, refused first when it cannot fit."""
    check_model_size(config, source=source)
    return MODELS[config.kind](config)


__all__ = ["MODELS", "VAE2", "VAE3", "ConvVAE", "GaussianVAE", "LinearVAE", "MLPVAE", "ModelConfig", "VAEBase",
           "build_model", "check_model_size", "check_step_size", "model_config", "model_shell"]


def model_config(kind: str, data_shape: tuple[int, ...], latents: int, **settings: object) -> ModelConfig:
    """A ModelConfig for family `kind` on rows of `data_shape`, with the family's own decoder variance and extras."""
    data_dim = 1
    for s in data_shape:
        data_dim *= int(s)
    extra = dict(settings.pop("extra", None) or {})
    if kind == "vae3":
        settings["decoder_variance"] = "network"
    if kind == "conv":
        if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
            raise ModelError(f"conv model: needs square images (C, S, S), got rows of shape {tuple(data_shape)}; "
                             "pass an image folder or an (N, C, S, S) array")
        extra.setdefault("in_channels", int(data_shape[0]))
        extra.setdefault("image_size", int(data_shape[1]))
    return ModelConfig(kind=kind, data_dim=data_dim, latent_dim=latents, extra=extra, **settings)
