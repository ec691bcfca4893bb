"""The hostile-input suite's shared kit: one small valid VAE-1, a linear VAE and a data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_helpers import D, H

from entropy_elbo.checkpoints import save_checkpoint
from entropy_elbo.models import ModelConfig, build_model


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a valid VAE-1 (vae1.safetensors), a linear VAE (linear.safetensors) and data x.npy (50x4)."""
    d = tmp_path_factory.mktemp("kit")
    torch.manual_seed(0)
    vae1 = build_model(ModelConfig(kind="vae1", data_dim=D, latent_dim=H, hidden=(8,)))
    save_checkpoint(vae1, d / "vae1.safetensors")
    save_checkpoint(build_model(ModelConfig(kind="linear", data_dim=D, latent_dim=H)), d / "linear.safetensors")
    np.save(d / "x.npy", np.random.default_rng(0).normal(size=(50, D)).astype(np.float32))
    return d
