"""One line naming the file, key or flag at fault, and suggesting only what the tool accepts (issue 26, family 5).
Each case is built from its mechanism: a saved config checked field by field against its JSON type, a
state_dict's keys and entries checked wherever it sits, a report row that needs the Monte Carlo ELBO, a memory
limit that must be a finite number."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from hostile_helpers import assert_user_error, config_with, invoke, resave
from safetensors.torch import load_file


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("kind", ["vae1"], "text"), ("data_dim", "4", "an integer"), ("latent_dim", True, "an integer"),
    ("hidden", [8.5], "a list of integers"), ("init_log_sigma2", None, "a number"), ("extra", [], "a JSON object"),
])
def test_a_saved_config_field_of_the_wrong_json_type_is_named(kit: Path, tmp_path: Path, field: str, value: object,
                                                              expected: str) -> None:
    path = resave(kit / "vae1.safetensors", tmp_path / "odd.safetensors",
                  meta_change=config_with(kit / "vae1.safetensors", **{field: value}))
    assert_user_error(invoke(["estimate", path, "--data", kit / "x.npy"]), 1, "odd.safetensors",
                      re.escape(f"'{field}' is {json.dumps(value)}"), f"expected {expected}", "re-save the checkpoint")


def test_a_state_dict_with_integer_keys_is_one_line(kit: Path, tmp_path: Path) -> None:
    torch.save(dict(enumerate(load_file(kit / "vae1.safetensors").values())), tmp_path / "ints.pt")
    assert_user_error(invoke(["estimate", tmp_path / "ints.pt", "--data", kit / "x.npy"]), 1, "ints.pt",
                      "keys that are not parameter names", "0 of type int")


@pytest.mark.parametrize("wrapped", [True, False])
def test_a_non_tensor_entry_is_named_where_it_sits(kit: Path, tmp_path: Path, wrapped: bool) -> None:
    state = {**load_file(kit / "vae1.safetensors"), "note": "trained on Tuesday"}
    torch.save({"state_dict": state} if wrapped else state, tmp_path / "note.pt")
    line = assert_user_error(invoke(["estimate", tmp_path / "note.pt", "--data", kit / "x.npy"]), 1, "note.pt",
                             "entries that are not tensors", r"'note' \(str\)")
    assert ("its 'state_dict' holds" in line) == wrapped and "without a state_dict" not in line


def test_iwae_without_monte_carlo_samples_reports_the_bound(kit: Path) -> None:
    result = invoke(["estimate", kit / "vae1.safetensors", "--data", kit / "x.npy", "--samples", "0", "--iwae", "5"])
    assert result.exit_code == 0, result.stderr
    assert "IWAE bound" in result.stdout and "IWAE - MC ELBO" not in result.stdout


@pytest.mark.parametrize("limit", ["inf", "-inf", "nan"])
def test_a_memory_limit_that_is_no_finite_number_is_one_line(kit: Path, monkeypatch: pytest.MonkeyPatch,
                                                            limit: str) -> None:
    monkeypatch.setenv("ENTROPY_ELBO_MEMORY_LIMIT", limit)
    assert_user_error(invoke(["estimate", kit / "vae1.safetensors", "--data", kit / "x.npy"]), 1,
                      f"ENTROPY_ELBO_MEMORY_LIMIT='{limit}'", "not a finite number of bytes", "2e9")


@pytest.mark.parametrize("value", ["1e-46", "1e39"])
def test_a_decoder_variance_beyond_float32_blames_the_flag_and_names_values_it_accepts(kit: Path, tmp_path: Path,
                                                                                      value: str) -> None:
    state = load_file(kit / "vae1.safetensors")
    state.pop("log_sigma2")  # no learned variance: --decoder-variance is used
    torch.save(state, tmp_path / "fixed.pt")
    line = assert_user_error(invoke(["estimate", tmp_path / "fixed.pt", "--data", kit / "x.npy",
                                     "--decoder-variance", value]), 1,
                             re.escape(f"Error: --decoder-variance {float(value):g}:"), "beyond float32's range")
    lo, hi = re.search(r"between (\S+) and (\S+), or 'optimal'", line).groups()
    for accepted in (lo, hi):  # the values suggested are values the tool takes
        result = invoke(["estimate", tmp_path / "fixed.pt", "--data", kit / "x.npy", "--decoder-variance", accepted,
                         "--samples", "0", "--json"])
        assert "--decoder-variance" not in result.stderr, result.stderr


@pytest.mark.parametrize("index", [0, 2])
def test_a_huge_learned_per_dim_variance_names_the_parameter_and_index(kit: Path, tmp_path: Path, index: int) -> None:
    state = load_file(kit / "vae1.safetensors")
    state["log_sigma2"] = torch.zeros(4)
    state["log_sigma2"][index] = 1000.0
    torch.save(state, tmp_path / "huge.pt")
    reading = ["--activation", "relu", "--output-activation", "linear", "--no-head-activation"]  # no guessing
    assert_user_error(invoke(["estimate", tmp_path / "huge.pt", "--data", kit / "x.npy", *reading]), 1, "huge.pt",
                      f"tensor 'log_sigma2' holds log-variance 1000 at index {index}", "infinite in float32")


@pytest.mark.parametrize("beta", [0, -1, "2", float("inf"), True])
def test_a_loss_weight_that_is_not_positive_implies_no_variance(beta: object) -> None:
    from entropy_elbo.checkpoints.pythae import pythae_implied_variance
    from entropy_elbo.checkpoints.torchfiles import lightning_implied_variance

    sigma2, why = pythae_implied_variance({"name": "BetaVAEConfig", "beta": beta})
    assert sigma2 is None and "only a positive finite beta" in why, why
    if isinstance(beta, (int, float)) and not isinstance(beta, bool) and beta <= 0:
        sigma2, why = lightning_implied_variance({"kld_weight": 0.1, "beta": beta, "loss_type": "H"}, 4)
        assert sigma2 is None and "only a positive finite beta" in why, why


def test_nan_reached_by_the_models_own_weights_is_blamed_on_them_not_on_a_data_row() -> None:
    from entropy_elbo.elbo import estimate
    from entropy_elbo.errors import EntropyElboError
    from entropy_elbo.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=4, latent_dim=2, hidden=(8,)))
    x = torch.randn(10, 4)
    with torch.no_grad():
        model.encoder[0][0].weight[0, 0] = float("nan")  # what a diverged training step leaves
    with pytest.raises(EntropyElboError, match=r"the model's own weights hold NaN or Inf \(parameter 'encoder\.0\.0\."
                                               r"weight'\).*training diverged") as caught:
        estimate(model, [x], samples=2)
    assert "data row" not in str(caught.value) and "--data" not in str(caught.value)


def test_collapse_blames_nan_weights_on_the_parameter_not_on_a_data_row() -> None:
    from entropy_elbo.errors import EntropyElboError
    from entropy_elbo.latents import collapse
    from entropy_elbo.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=4, latent_dim=2, hidden=(8,)))
    x = torch.randn(10, 4)
    with torch.no_grad():
        model.encoder[0][0].bias[3] = float("inf")  # diverged weights: the encoder's outputs are NaN for every row
    with pytest.raises(EntropyElboError, match=r"the model's own weights hold NaN or Inf \(parameter 'encoder\.0\.0\."
                                               r"bias'\).*training diverged") as caught:
        collapse(model, [x[:4], x[4:]])
    assert "data row" not in str(caught.value) and "--data" not in str(caught.value)
    x[6, 1] = float("nan")  # finite weights, a NaN in the data: the row is named, as before
    model = build_model(ModelConfig(kind="vae1", data_dim=4, latent_dim=2, hidden=(8,)))
    with pytest.raises(EntropyElboError, match=r"^data row 6, latent 0: "):
        collapse(model, [x[:4], x[4:]])
