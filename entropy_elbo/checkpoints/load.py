"""`load_model`: open any supported checkpoint as a GaussianVAE; `wrap_module`: the same for a live module."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from entropy_elbo.checkpoints.adapt import adapt
from entropy_elbo.checkpoints.introspect import Introspection
from entropy_elbo.checkpoints.native import check_variances, unreadable_reason
from entropy_elbo.checkpoints.options import LoadOptions
from entropy_elbo.checkpoints.raw import RawCheckpoint, check_finite
from entropy_elbo.checkpoints.sources import NATIVE, read_checkpoint
from entropy_elbo.errors import CheckpointError, ModelError
from entropy_elbo.limits import check_regular
from entropy_elbo.models.protocol import GaussianVAE, VAEBase


@dataclass
class LoadedModel:
    """A model ready for the estimators, with what we know of where it came from."""

    model: GaussianVAE
    source: str
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def introspection(self) -> Introspection | None:
        """What was found out about the checkpoint, with the evidence for every guess."""
        found = self.metadata.get("introspection")
        return found if isinstance(found, Introspection) else None



def load_model(path: str | Path, *, device: torch.device | str = "cpu",
               options: LoadOptions | None = None) -> LoadedModel:
    """Open a checkpoint of any supported format as a model in eval mode on `device`."""
    path = Path(path)
    options = options or LoadOptions()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder; check the checkpoint path")
    check_regular(path, "a checkpoint file or a pythae model folder", CheckpointError, folder_ok=True)
    if NATIVE.opens(path, options):
        model, meta = NATIVE.load(path, device)
        return LoadedModel(model, f"{path} (entropy-elbo checkpoint, {model.config.kind})", meta)
    if path.is_file() and (reason := unreadable_reason(path)):
        raise CheckpointError(reason)
    raw = read_checkpoint(path, trust_code=options.trust_code, model_given=options.model is not None,
                          key=options.checkpoint_key)
    check_finite(raw.state, path, raw.meta.get("file"))
    try:
        model, intro = adapt(raw, options, str(path))
        check_variances(model, path)
    except (CheckpointError, ModelError) as err:  # every guess's message names the file it was made about
        if str(path) in str(err):
            raise
        raise CheckpointError(f"{path}: {err}") from None
    return LoadedModel(model.to(device).eval(), f"{path} ({intro.model_kind})", {"introspection": intro})


def wrap_module(module: nn.Module, example: Tensor, options: LoadOptions | None = None) -> tuple[GaussianVAE,
                                                                                            Introspection | None]:
    """A live module as a GaussianVAE, found out as `load_model` finds out a checkpoint (and with its overrides).

    Our own models are used as they are. Any other module is wrapped in a `ModuleAdapter`, after one run of its
    encoder and decoder on the first rows of `example` (the caller keeps its train/eval flags and RNG state).
    """
    options = options or LoadOptions()
    if options.model is not None:
        raise CheckpointError("model: a live module needs no --model class; drop options.model")
    overridden = any(v is not None for v in (options.decoder_var, options.decoder_var_param, options.encoder_var,
                                             options.encoder_var_param, options.decoder_variance))
    if isinstance(module, VAEBase) and not overridden:
        return module, None
    state = {k: v for k, v in module.state_dict().items() if isinstance(v, Tensor)}
    check_finite(state, Path("the live module"))
    raw = RawCheckpoint("live module", state, module=module)
    model, intro = adapt(raw, replace(options, input_shape=tuple(example.shape[1:])), f"live {type(module).__name__}",
                         probe=example[:2])
    check_variances(model, intro.source)
    return model, intro



def inspect_checkpoint(path: str | Path, options: LoadOptions | None = None) -> Introspection:
    """What `load_model` finds in `path`, with the evidence for every guess."""
    return load_model(path, options=options).introspection
