"""Training runs: resume after SIGKILL, NaN stop, conv on an image folder, data preparation, presets, plots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from entropy_elbo.checkpoints import load_model
from entropy_elbo.checkpoints.native import read_metadata
from entropy_elbo.cli import main
from entropy_elbo.data import make_synthetic, save_array
from entropy_elbo.models import build_model, model_config
from entropy_elbo.presets import PAPER_SCHEDULE, PRESETS
from entropy_elbo.runs import read_log, run_for_out
from entropy_elbo.train import TrainConfig, TrainingDiverged, prepare_data, train

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TRAIN = [sys.executable, "-m", "entropy_elbo", "train", "vae1", "--latents", "2", "--epochs", "8",
         "--batch-size", "100", "--samples", "5", "--holdout", "0.2", "--seed", "3", "--quiet"]


def _without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "wall_time")} for r in rows]


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path: Path) -> None:
    save_array(make_synthetic("ppca", n=600, seed=1), tmp_path / "x.npy")
    data = ["--data", str(tmp_path / "x.npy")]
    subprocess.run([*TRAIN, *data, "--out", str(tmp_path / "full")], env=ENV, check=True, capture_output=True)
    proc = subprocess.Popen([*TRAIN, *data, "--out", str(tmp_path / "cut")], env=ENV, stderr=subprocess.PIPE)
    log = tmp_path / "cut" / "log.jsonl"
    deadline = time.monotonic() + 120
    while len(read_log(log)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert 3 <= len(read_log(log)) < 8  # killed midway
    done = subprocess.run([*TRAIN, *data, "--resume", str(tmp_path / "cut")], env=ENV, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    for name in ("model.safetensors", "state.safetensors"):
        full, cut = load_file(tmp_path / "full" / name), load_file(tmp_path / "cut" / name)
        assert full.keys() == cut.keys()
        assert all(torch.equal(full[k], cut[k]) for k in full), name
    rows = read_log(log)
    assert [r["epoch"] for r in rows] == list(range(1, 9))
    assert _without_times(rows) == _without_times(read_log(tmp_path / "full" / "log.jsonl"))


def test_resume_refuses_changed_settings(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "r.safetensors"
    args = ["train", "linear", "--data", "ppca", "--epochs", "1", "--batch-size", "5000", "--samples", "1",
            "--quiet"]
    assert runner.invoke(main, [*args, "--out", str(out)]).exit_code == 0
    assert (tmp_path / "r.run" / "log.jsonl").is_file() and out.is_file()
    res = runner.invoke(main, ["train", "linear", "--data", "ppca", "--lr", "0.5", "--resume", str(out)])
    assert res.exit_code == 1 and "--lr 0.5 differs from the run's" in res.output
    res = runner.invoke(main, [*args, "--out", str(out)])
    assert res.exit_code == 1 and "already holds a run" in res.output


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    x = make_synthetic("ppca", n=400, seed=0)
    torch.manual_seed(0)
    model = build_model(model_config("vae1", (10,), 2))
    run = run_for_out(tmp_path / "run").create()
    good: dict[str, torch.Tensor] = {}

    def poison(row: dict) -> None:
        if row["epoch"] == 2:
            good.update({k: v.clone() for k, v in model.state_dict().items()})
            with torch.no_grad():
                model.fc_var.bias.fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match=r"epoch 3: the loss is nan; the last good checkpoint .* \(epoch 2\)"):
        train(model, x, TrainConfig(epochs=5, batch_size=200, samples=2), run=run, on_epoch=poison)
    loaded = load_model(run.checkpoint).model
    assert all(torch.equal(good[k], v) for k, v in loaded.state_dict().items())
    assert [r["epoch"] for r in read_log(run.log)] == [1, 2]


def test_conv_on_an_image_folder_trains_resumes_and_estimates(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    runner = CliRunner()
    args = ["train", "conv", "--data", str(folder), "--image-size", "16", "--latents", "4", "--hidden", "4,8",
            "--batch-size", "6", "--samples", "1", "--holdout", "0.25", "--quiet"]
    res = runner.invoke(main, [*args, "--epochs", "1", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, [*args, "--epochs", "2", "--resume", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    rows = read_log(tmp_path / "run" / "log.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["heldout_elbo"] is not None
    images = prepare_data(str(folder), image_size=16).train
    save_array(images, tmp_path / "images.npy")
    res = runner.invoke(main, ["estimate", str(tmp_path / "run" / "model.safetensors"), "--data",
                               str(tmp_path / "images.npy"), "--samples", "4", "--rows", "all", "--json"])
    assert res.exit_code == 0, res.output
    est = json.loads(res.stdout)
    assert est["n"] == 12 and est["d"] == 3 * 16 * 16 and est["h"] == 4 and est["decoder_variance"] == "scalar"
    gap = est["mc_elbo"] - est["entropy_elbo"]
    assert abs(gap - est["stationarity"]["gap"]) < 1e-6 * abs(est["mc_elbo"])  # eq. 76 on the conv model


def test_prepare_data_scales_with_the_training_split_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    table = np.column_stack([rng.integers(0, 2, 200), rng.normal(5, 3, (200, 4))]).astype(np.float32)
    np.savetxt(tmp_path / "t.csv", table, delimiter=",")
    prepared = prepare_data(str(tmp_path / "t.csv"), drop_column=0, scale="minmax", holdout=0.3, seed=4)
    assert prepared.train.shape == (140, 4) and prepared.heldout.shape == (60, 4)
    rows = np.random.default_rng(4).permutation(200)
    held, kept = np.sort(rows[:60]), np.sort(rows[60:])
    features = np.loadtxt(tmp_path / "t.csv", delimiter=",")[:, 1:]
    lo, hi = features[kept].min(0), features[kept].max(0)
    np.testing.assert_allclose(prepared.train, (features[kept] - lo) / (hi - lo), atol=1e-6)
    np.testing.assert_allclose(prepared.heldout, (features[held] - lo) / (hi - lo), atol=1e-6)


def test_preset_settings_and_flag_overrides(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["train", "vae3", "--preset", "fig1c", "--epochs", "4", "--samples", "1",
                                    "--batch-size", "20000", "--quiet", "--out", str(tmp_path / "ring")])
    assert res.exit_code == 0, res.output
    stored = json.loads((tmp_path / "ring" / "run.json").read_text())
    settings, fig1c = stored["settings"], PRESETS["fig1c"]
    assert settings["data"] == "ring" and settings["lr"] == fig1c["lr"] == 1e-3 and settings["holdout"] == 0.5
    assert settings["epochs"] == 4 and settings["samples"] == 1 and settings["batch_size"] == 20000
    assert (settings["decay_fraction"], settings["variance_lr_factor"]) == (0.3, 10.0)  # ours, recorded unasked
    assert stored["data"]["shape"] == [10000, 10] and stored["data"]["heldout_rows"] == 10000
    assert json.loads(stored["model_config"])["decoder_variance"] == "network"
    rows = [json.loads(line) for line in (tmp_path / "ring" / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["lr"] == pytest.approx(fig1c["lr"] * 0.01)  # our schedule: the cosine decay ends at lr / 100
    res = CliRunner().invoke(main, ["train", "vae3", "--preset", "fig1c", "--epochs", "2", "--samples", "1",
                                    "--batch-size", "20000", "--decay-fraction", "0", "--variance-lr-factor", "1",
                                    "--quiet", "--out", str(tmp_path / "paper")])
    assert res.exit_code == 0, res.output
    training = json.loads(read_metadata(tmp_path / "paper" / "model.safetensors")["training"])
    assert {k: training[k] for k in PAPER_SCHEDULE} == PAPER_SCHEDULE
    rows = [json.loads(line) for line in (tmp_path / "paper" / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == [fig1c["lr"]] * 2  # the paper's constant lr
    res = CliRunner().invoke(main, ["train", "linear", "--data", "ppca", "--variance-lr-factor", "0",
                                    "--out", str(tmp_path / "bad")])
    assert res.exit_code == 1 and "--variance-lr-factor: got 0.0" in res.output
    res = CliRunner().invoke(main, ["train", "vae1", "--preset", "susy", "--out", str(tmp_path / "s")])
    assert res.exit_code == 1 and "SUSY" in res.output


def test_plot_draws_the_logged_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from entropy_elbo.plot import plot_run

    rows = [{"epoch": e, "mc_elbo": -5.0 + e, "heldout_elbo": -5.5 + e, "entropy_elbo": -5.2 + e,
             "relative_gap": 0.01 / e, "latent_entropies": [0.3, 1.3 - 0.01 * e, 1.4]} for e in (1, 2, 3)]
    fig = plot_run(rows, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    top, latents, gap, bars = fig.axes
    assert list(latents.lines[1].get_ydata()) == [1.29, 1.28, 1.27]
    assert list(top.lines[2].get_ydata()) == [-4.2, -3.2, -2.2]
    assert list(gap.lines[0].get_ydata()) == pytest.approx([1.0, 0.5, 1 / 3])
    assert [b.get_height() for b in bars.patches] == [1.4, 1.27, 0.3]
    assert "1 of 3 latents active" in bars.get_title()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    res = CliRunner().invoke(main, ["plot", str(tmp_path / "nothing.jsonl"), "--out", str(tmp_path / "g.png")])
    assert res.exit_code == 1 and "Error:" in res.output
    with pytest.raises(Exception, match="needs matplotlib"):
        plot_run(rows, tmp_path / "g.png")


def test_progress_bar_shows_the_active_latents_of_the_last_epoch(tmp_path: Path) -> None:
    save_array(make_synthetic("ppca", n=600, seed=1), tmp_path / "x.npy")
    cmd = [*TRAIN, "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "run")]
    done = subprocess.run([c for c in cmd if c != "--quiet"], env={**ENV, "COLUMNS": "250"}, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    last = read_log(tmp_path / "run" / "log.jsonl")[-1]
    active = sum(e <= 1.0 for e in last["latent_entropies"])  # eq. 24 from the logged per-latent entropies
    bar = [line for line in done.stderr.splitlines() if "epoch" in line and "8/8" in line]
    assert bar and f"active latents {active}/2" in bar[-1], done.stderr
    assert f"gap {100 * last['relative_gap']:+.2f}%" in bar[-1]
