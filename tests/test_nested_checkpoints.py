"""A state_dict nested under other keys at any depth is found by its tensors and named (issue #22 item 5); several
are a one-line choice naming --checkpoint-key; the numbers are those of the state_dict saved bare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import entropy_elbo
from entropy_elbo.cli import main
from entropy_elbo.errors import EntropyElboError


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc, self.fc_mu, self.fc_var = nn.Linear(4, 8), nn.Linear(8, 2), nn.Linear(8, 2)
        self.dec, self.out = nn.Linear(2, 8), nn.Linear(8, 4)
        self.log_sigma2 = nn.Parameter(torch.tensor(0.0))


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    torch.manual_seed(0)
    sd = Net().state_dict()
    optim = torch.optim.Adam(Net().parameters()).state_dict()
    torch.save(sd, tmp_path / "bare.pt")
    torch.save({"model_states": {"net": sd}, "optim": optim, "epoch": 3}, tmp_path / "nested.pt")
    torch.save({"model_states": {"net": sd, "ema": sd}, "epoch": 3}, tmp_path / "two.pt")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32))
    return tmp_path / "bare.pt", tmp_path / "nested.pt", tmp_path / "two.pt", tmp_path / "x.npy"


FLAGS = {"activation": "relu", "output_activation": "linear", "head_activation": False}


def test_a_nested_state_dict_is_found_named_and_read_as_the_bare_one(files: tuple[Path, ...]) -> None:
    bare, nested, _, x = files
    want = entropy_elbo.estimate(bare, x, samples=4, device="cpu", **FLAGS)
    got = entropy_elbo.estimate(nested, x, samples=4, device="cpu", **FLAGS)
    assert got.entropy_elbo == want.entropy_elbo and got.mc_elbo == want.mc_elbo
    assert "found the weights under model_states.net" in got.extra["checkpoint"]["notes"]


def test_several_state_dicts_are_a_choice_naming_the_flag(files: tuple[Path, ...]) -> None:
    bare, _, two, x = files
    with pytest.raises(EntropyElboError, match=r"2 state_dicts \(model_states.net, model_states.ema\); pick one "
                                               r"with --checkpoint-key model_states.net"):
        entropy_elbo.estimate(two, x, samples=4, device="cpu", **FLAGS)
    got = CliRunner().invoke(main, ["inspect", str(two), "--checkpoint-key", "model_states.ema", "--json"])
    assert got.exit_code == 0, got.output
    assert "found the weights under model_states.ema" in json.loads(got.stdout)["notes"]
    bad = CliRunner().invoke(main, ["inspect", str(two), "--checkpoint-key", "model_states.nope"])
    assert bad.exit_code == 1 and "--checkpoint-key model_states.nope: no state_dict there" in bad.output
    assert len(bad.output.strip().splitlines()) == 1


class SameNames(nn.Module):  # an MLP whose decoder reuses the encoder's layer names (fc1, fc21)
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.ModuleDict({"fc1": nn.Linear(4, 8), "fc21": nn.Linear(8, 2), "fc22": nn.Linear(8, 2)})
        self.decoder = nn.ModuleDict({"fc21": nn.Linear(2, 8), "fc3": nn.Linear(8, 4)})
        self.log_sigma2 = nn.Parameter(torch.tensor(0.0))


def test_a_candidate_list_never_names_a_layer_of_the_other_network(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(SameNames().state_dict(), tmp_path / "m.pt")
    got = CliRunner().invoke(main, ["inspect", str(tmp_path / "m.pt"), "--json", "--activation", "relu"])
    assert got.exit_code == 0, got.output
    intro = json.loads(got.stdout)
    assert intro["h"] == 2 and intro["d"] == 4 and intro["encoder"]["name"] == "encoder.fc22"


@pytest.mark.parametrize(("cls", "why"), [("AutoencoderTiny", "no encoder variance"), ("VQModel", "vector-quantized"),
                                          ("AutoencoderOobleck", "audio VAE"), ("UNet2DModel", "only AutoencoderKL")])
def test_a_diffusers_folder_of_another_class_is_named_with_why(tmp_path: Path, cls: str, why: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": cls, "_diffusers_version": "0.30.0"}))
    got = CliRunner().invoke(main, ["inspect", str(tmp_path)])
    assert got.exit_code == 1 and f"a diffusers {cls}, not an AutoencoderKL" in got.output and why in got.output
    assert "pythae" not in got.output and len(got.output.strip().splitlines()) == 1
