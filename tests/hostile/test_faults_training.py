"""Faults during training: a real `python -m entropy_elbo train ... --out run/` is SIGKILLed at random points
(while starting up, right after its log grows, in the middle of an atomic write) and continued each time;
the finished run equals an uninterrupted one tensor by tensor. A NaN loss stops in one line with the last
good checkpoint intact, loadable and resumable to the uninterrupted result.
"""

from __future__ import annotations

import json
import os
import random
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
from entropy_elbo.cli import main
from entropy_elbo.runs import read_log, state_epoch

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
EPOCHS = 40
SETTINGS = ["--epochs", str(EPOCHS), "--batch-size", "50", "--samples", "2", "--holdout", "0.1", "--seed", "5",
            "--quiet"]
KILLS = {"cycles": 0, "mid_write": 0, "log_ahead_of_state": 0, "before_first_epoch": 0}  # for the report


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fault_data") / "x.npy"
    rng = np.random.default_rng(7)
    np.save(path, (rng.normal(size=(200, 2)) @ rng.normal(size=(2, 4)) + 0.3 * rng.normal(size=(200, 4)))
            .astype(np.float32))
    return path


def train_args(data: Path, *where: object) -> list[str]:
    return ["train", "linear", "--data", str(data), *SETTINGS, *map(str, where)]


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run (in this process: the CLI's own code path, without a second torch import)."""
    run = tmp_path_factory.mktemp("fault_ref") / "run"
    result = CliRunner().invoke(main, train_args(data, "--out", run))
    assert result.exit_code == 0, result.output
    return run


def without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "wall_time")} for r in rows]


def assert_same_run(got: Path, want: Path) -> None:
    """Checkpoint, resume state and log equal the uninterrupted run's; no temporary file is left."""
    for name in ("model.safetensors", "state.safetensors"):
        a, b = load_file(got / name), load_file(want / name)
        assert a.keys() == b.keys(), name
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    assert without_times(read_log(got / "log.jsonl")) == without_times(read_log(want / "log.jsonl"))
    assert json.loads((got / "run.json").read_text()) == json.loads((want / "run.json").read_text())
    assert sorted(p.name for p in got.iterdir()) == ["log.jsonl", "model.safetensors", "run.json",
                                                     "state.safetensors"]


def lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def kill_at(proc: subprocess.Popen, run: Path, mode: str, rng: random.Random) -> bool:
    """SIGKILL `proc` at a point chosen by `mode`; True when it was killed (not already finished)."""
    deadline = time.monotonic() + 120
    if mode == "startup":  # anywhere from the interpreter's start to the end of its first epoch
        until = time.monotonic() + rng.uniform(0.0, 2.0)
        while time.monotonic() < until and lines(run / "log.jsonl") == 0 and proc.poll() is None:
            time.sleep(0.0005)
    elif mode == "log":  # right after the log grows by 1-3 rows: the state and checkpoint writes come next
        target = lines(run / "log.jsonl") + rng.randint(1, 3)
        while lines(run / "log.jsonl") < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.0005)
    elif mode == "write":  # while an atomic write's temporary file exists, after 1-3 more epochs
        target = lines(run / "log.jsonl") + rng.randint(1, 3)
        while proc.poll() is None and time.monotonic() < deadline and not (
                lines(run / "log.jsonl") >= target and run.is_dir()
                and any(n.endswith(".tmp") for n in os.listdir(run))):
            time.sleep(0.0002)
    proc.send_signal(signal.SIGKILL)
    return proc.wait() == -signal.SIGKILL


def record(run: Path) -> None:
    """What the kill left behind: a torn write, log rows ahead of the saved state, or no epoch yet."""
    KILLS["cycles"] += 1
    names = os.listdir(run) if run.is_dir() else []
    KILLS["mid_write"] += any(n.endswith(".tmp") for n in names)
    if "state.safetensors" not in names:
        KILLS["before_first_epoch"] += 1
        return
    KILLS["log_ahead_of_state"] += len(read_log(run / "log.jsonl")) > state_epoch(run / "state.safetensors")


def go_on(data: Path, run: Path) -> list[str]:
    """What a user does after a crash: --resume the run, or start it again if it never began."""
    if (run / "run.json").is_file() and (run / "run.json").stat().st_size > 0:
        return train_args(data, "--resume", run)
    if run.exists():  # stopped before its settings were written: nothing to keep
        for p in run.iterdir():
            p.unlink()
        run.rmdir()
    return train_args(data, "--out", run)


def test_sigkill_at_random_points_then_resume_equals_uninterrupted(data: Path, reference: Path, tmp_path: Path) -> None:
    """Four kills of one run (each process costs a torch import): at startup, after the log grows, mid write,
    and one more of the last two; the kill points are drawn from a seeded generator."""
    rng = random.Random(int(os.environ.get("ENTROPY_ELBO_KILL_SEED", "0")))
    modes = ["startup", "log", "write", rng.choice(["log", "write"])]
    rng.shuffle(modes)
    run = tmp_path / "run"
    args = train_args(data, "--out", run)
    for mode in modes:
        proc = subprocess.Popen([sys.executable, "-m", "entropy_elbo", *args], env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        assert kill_at(proc, run, mode, rng), f"the run finished before the {mode} kill: {proc.stderr.read()}"
        record(run)
        args = go_on(data, run)
    done = subprocess.run([sys.executable, "-m", "entropy_elbo", *args], env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert_same_run(run, reference)
    assert load_model(run / "model.safetensors").metadata["epoch"] == EPOCHS
    print(f"kill/resume cycles so far: {KILLS}")  # noqa: T201 -- the count the report quotes


def test_nan_loss_stops_in_one_line_and_keeps_the_last_good_checkpoint(data: Path, reference: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import entropy_elbo.train as training

    real, calls = training.sampled_elbo_parts, {"n": 0}
    steps_per_epoch = 4  # 180 training rows in batches of 50

    def poisoned(model, x, samples, generator):  # noqa: ANN001, ANN202 -- the model's loss turns NaN in epoch 3
        f, log_tau2, dec = real(model, x, samples, generator)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] > 2 * steps_per_epoch:
                f = f * float("nan")
        return f, log_tau2, dec

    run = tmp_path / "run"
    monkeypatch.setattr(training, "sampled_elbo_parts", poisoned)
    result = CliRunner().invoke(main, train_args(data, "--out", run))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"Error: training diverged at epoch 3: the loss is nan; the last good checkpoint {run / 'model.safetensors'} "
        "(epoch 2) is intact; lower --lr or raise --init-log-sigma2 and train again")
    loaded = load_model(run / "model.safetensors")  # intact and loadable: epoch 2's weights, as in the state
    assert loaded.metadata["epoch"] == 2
    state = load_file(run / "state.safetensors")
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, state[f"model.{key}"]), key
    assert [r["epoch"] for r in read_log(run / "log.jsonl")] == [1, 2]
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]
    monkeypatch.setattr(training, "sampled_elbo_parts", real)  # the fault is gone: resuming ends where a clean run does
    result = CliRunner().invoke(main, train_args(data, "--resume", run))
    assert result.exit_code == 0, result.output
    assert_same_run(run, reference)


def test_data_that_overflows_the_loss_stops_before_any_checkpoint(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    x[17, 2] = 3e19  # finite in float32, but its square overflows: the loss would be infinite in the first batch
    np.save(tmp_path / "x.npy", x)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, train_args(tmp_path / "x.npy", "--out", run))
    assert result.exit_code == 1 and result.stdout == "" and "Traceback" not in result.stderr
    lines_ = result.stderr.strip().splitlines()  # the data check that every command shares stops it before training
    assert len(lines_) == 1 and lines_[0].startswith(f"Error: {tmp_path / 'x.npy'}: row 17, column 2 holds the value "
                                                     "3e+19"), lines_
    assert "overflows float32" in lines_[0]
    assert not (run / "model.safetensors").exists() and not (run / "state.safetensors").exists()
    assert not (run / "log.jsonl").exists()
