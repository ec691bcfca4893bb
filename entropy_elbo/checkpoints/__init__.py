"""Checkpoint formats: `load_model` opens any supported file and returns a model meeting the protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from entropy_elbo.checkpoints.native import is_native, load_checkpoint, save_checkpoint, unreadable_reason
from entropy_elbo.errors import CheckpointError
from entropy_elbo.models.protocol import GaussianVAE


@dataclass
class LoadedModel:
    """A model ready for the estimators, with what we know of where it came from."""

    model: GaussianVAE
    source: str
    metadata: dict[str, object] = field(default_factory=dict)


def load_model(path: str | Path, *, device: torch.device | str = "cpu") -> LoadedModel:
    """Open a checkpoint of any supported format as a model in eval mode on `device`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder; check the checkpoint path")
    if path.is_file() and is_native(path):
        model, meta = load_checkpoint(path, device=device)
        return LoadedModel(model, f"{path} (entropy-elbo checkpoint, {model.config.kind})", meta)
    if path.is_file() and (reason := unreadable_reason(path)):
        raise CheckpointError(reason)
    raise CheckpointError(f"{path}: not a checkpoint format entropy-elbo can read; see `entropy-elbo inspect --help`")


__all__ = ["LoadedModel", "load_checkpoint", "load_model", "save_checkpoint"]
