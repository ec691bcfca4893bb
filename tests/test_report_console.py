"""The streams report writes to: a process started with stdout closed ends in one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from entropy_elbo.checkpoints import save_checkpoint
from entropy_elbo.models import ModelConfig, build_model

ROOT = Path(__file__).resolve().parents[1]
CLOSED = "Error: cannot write the results to standard output (it is closed); "


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small VAE-1 (vae1.safetensors) and its data (x.npy, 50x4)."""
    d = tmp_path_factory.mktemp("console")
    torch.manual_seed(0)
    save_checkpoint(build_model(ModelConfig(kind="vae1", data_dim=4, latent_dim=2, hidden=(8,))),
                    d / "vae1.safetensors")
    np.save(d / "x.npy", np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32))
    return d


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_estimate_with_stdout_closed_is_one_line_on_stderr_and_exit_1(kit: Path, as_json: bool) -> None:
    """`entropy-elbo estimate ... >&-`: the real process, its stdout closed by the shell before Python starts."""
    args = [sys.executable, "-m", "entropy_elbo", "estimate", str(kit / "vae1.safetensors"), "--data",
            str(kit / "x.npy"), "--samples", "2", *(["--json"] if as_json else [])]
    done = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *args], stderr=subprocess.PIPE, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = done.stderr.splitlines()
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[-1].startswith(CLOSED), done.stderr
    assert all(line.startswith("warning:") for line in lines[:-1]), done.stderr  # the model's own warnings


def test_importing_report_touches_no_stream() -> None:
    """The consoles are built when they print, so a process without stdout can still import the command line."""
    code = "import sys; sys.stdout = None; import entropy_elbo.cli; print('ok', file=sys.stderr)"
    done = subprocess.run([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stderr.strip() == "ok", done.stderr
