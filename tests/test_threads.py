"""torch's CPU threads: --threads > OMP_NUM_THREADS > the work's size and the idle cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from entropy_elbo import threads
from entropy_elbo.checkpoints import save_checkpoint
from entropy_elbo.cli import main
from entropy_elbo.data import make_synthetic, save_array
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models import ModelConfig, build_model


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    yield
    torch.set_num_threads(1)


def test_small_work_runs_on_one_thread_and_large_work_on_the_idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "idle_cores", lambda interval=0.05: 5.6)
    assert threads.choose_threads(threads.LARGE_WORK - 1) == 1
    assert threads.choose_threads(threads.LARGE_WORK) == 6  # round(5.6)
    monkeypatch.setattr(threads, "idle_cores", lambda interval=0.05: 0.2)  # a busy machine
    assert threads.choose_threads(1e12) == 1
    monkeypatch.setattr(threads, "idle_cores", lambda interval=0.05: 30.0)  # idle cores we may not use
    assert threads.choose_threads(1e12) == 8


def test_the_flag_beats_the_environment_which_beats_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_threads(1.0) == 3 and threads.choose_threads(1.0, requested=2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(EntropyElboError, match=r"OMP_NUM_THREADS='many' is not a number of threads"):
        threads.choose_threads(1.0)
    with pytest.raises(EntropyElboError, match=r"--threads 0: pass 1 or more"):
        threads.choose_threads(1.0, requested=0)


def test_idle_cores_reads_a_plausible_figure() -> None:
    idle = threads.idle_cores(0.02)
    assert idle is None or 0.0 <= idle <= (os.cpu_count() or 1) + 1e-9


def test_work_counts_weights_per_row_and_sample() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(10, 5), torch.nn.Linear(5, 2))  # 55 + 12 weights and biases
    assert threads.model_work(model, rows=100, samples=3) == 67 * 300
    conv = torch.nn.Conv2d(3, 4, 3)  # 108 + 4
    assert threads.model_work(conv, rows=2) == 112 * threads.CONV_REUSE * 2


def test_the_cli_sets_the_threads_it_is_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    save_checkpoint(build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2)), tmp_path / "m.safetensors")
    save_array(make_synthetic("ppca", n=50, seed=0), tmp_path / "x.npy")
    args = ["estimate", str(tmp_path / "m.safetensors"), "--data", str(tmp_path / "x.npy"), "--samples", "2"]
    assert CliRunner().invoke(main, [*args, "--threads", "3"]).exit_code == 0
    assert torch.get_num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert CliRunner().invoke(main, args).exit_code == 0 and torch.get_num_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert CliRunner().invoke(main, args).exit_code == 0 and torch.get_num_threads() == 1  # small work
    res = CliRunner().invoke(main, [*args, "--threads", "0"])
    assert res.exit_code == 2 and "Invalid value for '--threads': 0 is not in the range x>=1" in res.output
