"""A run's settings: one typed object, merged as defaults < preset < run.json < given, checked where it is built."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models import ModelConfig
from entropy_elbo.run_settings import MODEL_DEFAULTS, RUN_KEYS, SETTINGS, RunSettings


def stored_run(settings: RunSettings) -> dict[str, object]:
    """run.json as a new run of `settings` writes it (the parts a resume reads)."""
    config = ModelConfig(kind=settings.model, data_dim=10, latent_dim=settings.latents)
    return {"settings": settings.stored(), "model_config": config.to_json()}


def test_the_preset_overrides_the_models_defaults_and_the_given_settings_override_both() -> None:
    plain = RunSettings.new("vae1", {"data": "ppca"})
    assert (plain.epochs, plain.batch_size, plain.lr, plain.samples) == tuple(MODEL_DEFAULTS["vae1"].values())
    assert plain.activation == "relu" and RunSettings.new("conv", {"data": "faces/"}).activation == "leaky_relu"
    chosen = RunSettings.new("linear", {"preset": "fig1a", "lr": 0.5})
    assert (chosen.data, chosen.holdout, chosen.epochs, chosen.batch_size, chosen.lr) == ("ppca", 0.5, 2000, 2000, 0.5)
    with pytest.raises(EntropyElboError, match=r"--preset fig1b: the paper trained on MNIST"):
        RunSettings.new("vae1", {"preset": "fig1b"})
    with pytest.raises(EntropyElboError, match=r"^train: pass --data NAME_OR_FILE"):
        RunSettings.new("vae1", {})


def test_values_are_cast_to_their_types_and_checked_once_where_built() -> None:
    s = RunSettings.new("vae1", {"data": Path("x.npy"), "lr": 1, "holdout": 0, "hidden": "50,40"})
    assert s.data == "x.npy" and type(s.lr) is float and type(s.holdout) is float and s.hidden == (50, 40)
    assert s.training.lr == 1.0 and s.training.decay_fraction == 0.3  # TrainConfig's default where not given
    for given, message in [({"epochs": 0}, "--epochs: got 0; it must be >= 1"),
                           ({"lr": -1.0}, "--lr: got -1.0; it must be a positive number"),
                           ({"decay_fraction": 2.0}, r"--decay-fraction: got 2.0; it must lie in \[0, 1\]"),
                           ({"init_log_sigma2": 1e9}, "--init-log-sigma2 1000000000.0: exp of it is 0 or infinite"),
                           ({"hidden": "50,x"}, "--hidden: '50,x' is not a comma-separated list of integers"),
                           ({"latents": "two"}, "--latents: got 'two'; it must be an integer")]:
        with pytest.raises(EntropyElboError, match=message):
            RunSettings.new("vae1", {"data": "ppca", **given})


def test_run_json_keeps_the_keys_it_always_had() -> None:
    always = {*RUN_KEYS, "crop", "rows", "hidden", "activation", "decay_fraction", "variance_lr_factor"}
    assert set(RunSettings.new("vae1", {"data": "ppca"}).stored()) == always
    given = RunSettings.new("linear", {"preset": "fig1a", "decay_fraction": 0.5, "hidden": (3,)}).stored()
    assert set(given) == always | {"preset"} and given["hidden"] == [3]
    assert SETTINGS[: len(RUN_KEYS)] == RUN_KEYS and "model" not in SETTINGS


def test_run_json_always_records_our_schedule_even_when_not_passed() -> None:
    """Ours (variance scalars at 10x lr, cosine decay over the last 30%), not the paper's: a reader of run.json sees
    which schedule trained the model without knowing TrainConfig's defaults."""
    plain = RunSettings.new("vae1", {"data": "ppca"}).stored()
    assert (plain["decay_fraction"], plain["variance_lr_factor"]) == (0.3, 10.0)
    paper = RunSettings.new("vae1", {"data": "ppca", "decay_fraction": 0, "variance_lr_factor": 1}).stored()
    assert (paper["decay_fraction"], paper["variance_lr_factor"]) == (0.0, 1.0)
    assert RunSettings.new("vae1", {"data": "ppca", **paper}).training.variance_lr_factor == 1.0


def test_a_resume_keeps_run_json_and_only_its_epochs_may_grow() -> None:
    first = RunSettings.new("vae1", {"data": "ppca", "hidden": "20,20", "lr": 0.01, "seed": 5})
    stored = stored_run(first)
    again = RunSettings.resumed(stored, None, {"epochs": 400, "hidden": "20,20", "seed": 5}, Path("r"), trained=300)
    assert again == replace(first, epochs=400)
    with pytest.raises(EntropyElboError, match=r"^--resume r: --lr 0.5 differs from the run's 0.01; a resumed run"):
        RunSettings.resumed(stored, "vae1", {"lr": 0.5}, Path("r"), trained=0)
    with pytest.raises(EntropyElboError, match=r"--hidden \[20, 21\] differs from the run's \[20, 20\]"):
        RunSettings.resumed(stored, None, {"hidden": "20,21"}, Path("r"), trained=0)
    with pytest.raises(EntropyElboError, match=r"--epochs 2 is fewer than the 3 epochs already trained"):
        RunSettings.resumed(stored, None, {"epochs": 2}, Path("r"), trained=3)
    with pytest.raises(EntropyElboError, match=r"the run trains vae1, not linear; run `train vae1 --resume`"):
        RunSettings.resumed(stored, "linear", {}, Path("r"), trained=0)


def test_an_old_run_json_without_the_later_keys_resumes() -> None:
    stored = stored_run(RunSettings.new("vae1", {"data": "ppca"}))
    stored["settings"] = {k: v for k, v in stored["settings"].items() if k in RUN_KEYS}  # no crop, rows, hidden, ...
    old = RunSettings.resumed(stored, None, {}, Path("r"), trained=0)
    assert old.hidden is None and old.crop is None and old.activation == "relu"


def test_train_help_names_the_schedule_as_ours() -> None:
    from click.testing import CliRunner

    from entropy_elbo.cli import main

    text = " ".join(CliRunner().invoke(main, ["train", "--help"], terminal_width=200).output.split())
    assert "The schedule is OURS, not the paper's" in text and "--decay-fraction 0 --variance-lr-factor 1" in text
    assert "Default 0.3: OUR schedule" in text and "Default 10: OUR schedule" in text
    assert "authors' dynamics" not in text
