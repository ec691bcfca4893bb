"""Every data-reading command reads what `train` read: the column drop and the fitted scaler recorded in the
checkpoint are applied to the raw file, not re-applied to a preprocessed one; and the CLI's wording details."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from entropy_elbo import report
from entropy_elbo.cli import main
from entropy_elbo.elbo import Estimate
from entropy_elbo.errors import EntropyElboError


def cli(*args: object, code: int = 0, env: dict[str, str] | None = None) -> object:
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert result.exit_code == code, result.output
    return result


def estimate_json(*args: object) -> tuple[dict, str]:
    result = cli("estimate", *args, "--samples", "3", "--json")
    return json.loads(result.stdout), result.stderr


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """200 rows: a 0/1 label, then 5 features (float32 values, written exactly)."""
    rng = np.random.default_rng(4)
    t = np.column_stack([rng.integers(0, 2, 200), rng.normal(3, 2, (200, 5))]).astype(np.float32)
    path = tmp_path_factory.mktemp("susy") / "SUSY.csv.gz"
    with gzip.open(path, "wt") as f:
        np.savetxt(f, t, delimiter=",", fmt="%.9g")
    return path, t


def test_susy_preset_checkpoint_reads_the_raw_file_as_train_did(table, tmp_path: Path) -> None:
    path, t = table
    run = tmp_path / "run"
    cli("train", "vae1", "--preset", "susy", "--data", path, "--hidden", "8,4", "--latents", "2", "--epochs", "1",
        "--out", run, "--quiet")
    ckpt = run / "model.safetensors"
    # by hand: the label dropped, min-max fitted on the training half (holdout 0.5, seed 0), float32 rows
    features = t[:, 1:].astype(np.float64)
    kept = np.sort(np.random.default_rng(0).permutation(200)[100:])
    lo, hi = features[kept].min(0), features[kept].max(0)
    np.save(tmp_path / "pre.npy", ((features - lo) / (hi - lo)).astype(np.float32))
    raw, raw_err = estimate_json(ckpt, "--data", path, "--rows", "all")  # all 200 rows, not the held-out default
    pre, pre_err = estimate_json(ckpt, "--data", tmp_path / "pre.npy", "--rows", "all")
    for key in ("mc_elbo", "entropy_elbo", "mc_stderr"):
        assert raw[key] == pytest.approx(pre[key], rel=1e-9, abs=1e-9)
    assert raw["n"] == 200 and raw["d"] == 5
    assert raw_err == (f"note: {path} preprocessed as in training (recorded in the checkpoint): column 0 dropped "
                       "and the minmax scaler fitted on its training rows applied\n")
    assert pre_err.startswith(f"note: {tmp_path / 'pre.npy'} read as is (rows of shape (5,), not the raw (6,)), "
                              "taken as already preprocessed: training's column 0 dropped and the minmax")
    for sub in ("collapse", "compare"):  # the other data-reading commands read the raw file too
        cli(sub, ckpt, "--data", path, *(["--sizes", "10", "--repeats", "2", "--mc-samples", "1"]
                                         if sub == "compare" else []))


def test_a_scaler_alone_is_ambiguous_on_a_file_and_the_flags_settle_it(table, tmp_path: Path) -> None:
    _, t = table
    x = t[:, 1:]
    np.save(tmp_path / "x.npy", x)
    run = tmp_path / "run"
    cli("train", "vae1", "--data", tmp_path / "x.npy", "--scale", "standard", "--hidden", "8", "--epochs", "1",
        "--out", run, "--quiet")
    ckpt = run / "model.safetensors"
    refused = cli("estimate", ckpt, "--data", tmp_path / "x.npy", code=1)
    assert refused.stderr == (f"Error: {tmp_path / 'x.npy'}: its checkpoint was trained with the standard scaler "
                              "fitted on its training rows applied, and a file's rows have the same shape raw or "
                              "scaled; pass --preprocess as-trained to scale them as in training, or --preprocess "
                              "none if the file is already scaled\n")
    x64 = x.astype(np.float64)
    np.save(tmp_path / "z.npy", ((x64 - x64.mean(0)) / x64.std(0)).astype(np.float32))
    applied, _ = estimate_json(ckpt, "--data", tmp_path / "x.npy", "--preprocess", "as-trained")
    as_is, _ = estimate_json(ckpt, "--data", tmp_path / "z.npy", "--preprocess", "none")
    assert applied["mc_elbo"] == pytest.approx(as_is["mc_elbo"], rel=1e-6)  # float32 rounding of z by hand


class PlainVAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc, self.fc_mu, self.fc_var = nn.Linear(4, 8), nn.Linear(8, 2), nn.Linear(8, 2)
        self.dec, self.out = nn.Linear(2, 8), nn.Linear(8, 4)


@pytest.fixture()
def plain(tmp_path: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    torch.save(PlainVAE().state_dict(), tmp_path / "m.pt")
    np.save(tmp_path / "y.npy", np.random.default_rng(0).standard_normal((300, 4)))
    return tmp_path / "m.pt", tmp_path / "y.npy"


FLAGS = ("--activation", "relu", "--output-activation", "linear", "--no-head-activation", "--samples", "4")


def test_how_a_checkpoint_was_read_is_said_before_the_pass_in_a_terminal(plain,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_pass(*args: object, **kwargs: object) -> None:
        raise EntropyElboError("the pass failed")

    monkeypatch.setattr("entropy_elbo.measure.estimate_batches", failing_pass)
    args = ("estimate", plain[0], "--data", plain[1], *FLAGS, "--decoder-variance", "1")
    assert cli(*args, code=1).stderr == "Error: the pass failed\n"  # a log or a script: the error alone, one line
    monkeypatch.setattr("entropy_elbo.cli.measure.watched", lambda: True)  # a terminal: read-lines before the pass
    lines = cli(*args, code=1).stderr.splitlines()
    assert lines[0].startswith(f"read {plain[0]} as ") and lines[-1] == "Error: the pass failed"
    assert any(line.startswith("assumed: ") for line in lines[1:-1])


def test_no_predicted_gap_for_a_fixed_variance_even_at_its_optimum(plain) -> None:
    args = ("estimate", plain[0], "--data", plain[1], *FLAGS, "--decoder-variance", "optimal")
    assert "gap" not in json.loads(cli(*args, "--json").stdout)["stationarity"]
    assert "predicted gap" not in cli(*args).stdout
    note = cli("inspect", plain[0]).stderr.splitlines()[-1]
    assert note == ("note: a fixed decoder variance: no entropy ELBO (Thm. 1 needs a learned sigma^2); estimate "
                    "gives the Monte Carlo ELBO at --decoder-variance VALUE, or at the best sigma^2 given the rest "
                    "with --decoder-variance optimal")


def test_notes_keep_their_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    est = Estimate(n=1, d=1, h=1, decoder_variance="scalar", entropy_elbo=1.0, entropies={"encoder": 0.0,
                   "prior": 0.0, "decoder": 0.0}, mc_elbo=None, mc_stderr=None, mc_sampling_stderr=None,
                   mc_samples=0, stationarity={"a": [1.0]}, note="see [bold]x[/bold] in [0, 1]")
    report.print_estimate(est, "m[1].safetensors", False)
    captured = capsys.readouterr()
    assert "note: see [bold]x[/bold] in [0, 1]\n" in captured.err and "ELBO of m[1].safetensors" in captured.out


def test_a_run_that_fails_before_its_first_epoch_leaves_no_folder(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32))
    run = tmp_path / "run"
    result = cli("train", "vae1", "--data", tmp_path / "x.npy", "--hidden", "4", "--epochs", "2", "--lr", "1e30",
                 "--batch-size", "5", "--out", run, "--quiet", code=1)
    assert result.stderr.startswith("Error: training diverged at epoch 1: ") and "no checkpoint was written" in \
        result.stderr
    assert not run.exists()
