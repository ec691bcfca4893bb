"""Our safetensors format: a round trip rebuilds the same model from the file alone, with no pickle."""

import json

import pytest
import torch
from safetensors import safe_open

from entropy_elbo.checkpoints import load_model, save_checkpoint
from entropy_elbo.errors import CheckpointError
from entropy_elbo.models import ModelConfig, build_model


@pytest.mark.parametrize("kind", ["linear", "vae1"])
def test_round_trip_gives_identical_outputs(tmp_path, kind):
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, data_dim=7, latent_dim=3, hidden=(11, 5), activation="tanh"))
    path = save_checkpoint(model, tmp_path / "m.safetensors", training={"epochs": 3})
    loaded = load_model(path)
    x = torch.randn(9, 7)
    for a, b in zip(model.encode(x), loaded.model.encode(x), strict=True):
        assert torch.equal(a, b)
    assert loaded.metadata["training"] == {"epochs": 3}
    assert loaded.model.config == model.config


def test_file_is_plain_safetensors_with_json_metadata(tmp_path):
    model = build_model(ModelConfig(kind="vae1", data_dim=4, latent_dim=2))
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
        assert set(fh.keys()) == set(model.state_dict())
    assert meta["format"] == "entropy-elbo/1"
    assert json.loads(meta["config"])["kind"] == "vae1"


def test_nan_weights_are_refused_with_the_tensor_name(tmp_path):
    model = build_model(ModelConfig(kind="vae1", data_dim=4, latent_dim=2))
    with torch.no_grad():
        model.fc_var.weight[0, 0] = float("nan")
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="fc_var.weight"):
        load_model(path)


@pytest.mark.parametrize("kind", ["linear", "vae1", "vae2", "vae3"])
def test_loading_initialises_nothing_at_random(tmp_path, kind):
    """The model is built on the meta device and the file's tensors assigned (issue #24): no random init runs, the
    weights are the file's (float64 cast to the model's float32, as a copy into it would), and they train."""
    model = build_model(ModelConfig(kind=kind, data_dim=6, latent_dim=2, hidden=(5,)))
    wide = {k: v.double() for k, v in model.state_dict().items()}
    model.load_state_dict(wide)
    path = save_checkpoint(model.double(), tmp_path / "m.safetensors")
    state = torch.get_rng_state()
    loaded = load_model(path).model
    assert torch.equal(torch.get_rng_state(), state)  # a real random init would have drawn from it
    got = loaded.state_dict()
    assert set(got) == set(wide)
    for key, value in wide.items():
        assert got[key].dtype == torch.float32 and not got[key].is_meta
        assert torch.equal(got[key], value.float()), key
    assert all(p.requires_grad for p in loaded.parameters())
