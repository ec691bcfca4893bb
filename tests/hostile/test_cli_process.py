"""The real `python -m entropy_elbo` in its own process: no traceback reaches the terminal unless --debug,
unreadable files and read-only folders (with root's file-permission override dropped), and two training
runs writing the same checkpoint at once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_helpers import Marker
from safetensors.torch import load_file

from entropy_elbo.checkpoints import load_model, save_checkpoint
from entropy_elbo.models import ModelConfig, build_model
from entropy_elbo.run_settings import MODEL_DEFAULTS
from entropy_elbo.runs import read_log
from entropy_elbo.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
# root ignores file modes; drop the two capabilities that let it, so chmod means what it says
UNPRIVILEGED = (["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                 "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else [])


def cli(*args: object, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = [*(prefix or []), sys.executable, "-m", "entropy_elbo", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)


def test_a_pickle_that_would_run_code_is_refused_in_one_line(kit: Path, tmp_path: Path) -> None:
    torch.save({"state_dict": {"w": Marker(str(tmp_path / "RAN"))}}, tmp_path / "evil.pt")
    done = cli("estimate", tmp_path / "evil.pt", "--data", kit / "x.npy")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"Error: {tmp_path / 'evil.pt'}: ")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "RAN").exists()


def test_debug_shows_the_traceback_and_only_then(kit: Path, tmp_path: Path) -> None:
    (tmp_path / "half.safetensors").write_bytes((kit / "vae1.safetensors").read_bytes()[:300])
    done = cli("--debug", "estimate", tmp_path / "half.safetensors", "--data", kit / "x.npy")
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "CheckpointError" in done.stderr
    assert "half.safetensors: truncated safetensors file" in done.stderr


UNPRIVILEGED_SCRIPT = """
import json, sys
from click.testing import CliRunner
from entropy_elbo.cli import main
results = [CliRunner().invoke(main, args) for args in json.loads(sys.argv[1])]
print(json.dumps([[r.exit_code, r.stdout, r.stderr, repr(r.exception)] for r in results]))
"""


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root without setpriv cannot lose rights")
def test_unreadable_files_and_read_only_folders(kit: Path, tmp_path: Path) -> None:
    ckpt, data, ro = tmp_path / "locked.safetensors", tmp_path / "locked.npy", tmp_path / "ro"
    shutil.copy(kit / "vae1.safetensors", ckpt)
    shutil.copy(kit / "x.npy", data)
    ro.mkdir()
    for path, mode in ((ckpt, 0), (data, 0), (ro, 0o555)):
        path.chmod(mode)
    cases = [  # (command line, exit code, message): one process without root's override runs them all
        (["estimate", ckpt, "--data", kit / "x.npy"], 2, f"Path '{ckpt}' is not readable"),
        (["estimate", kit / "vae1.safetensors", "--data", data], 1, "locked.npy: cannot be read (Permission denied)"),
        (["train", "linear", "--data", kit / "x.npy", "--out", ro / "m.safetensors", "--epochs", "1", "--quiet"], 1,
         f"cannot write in {ro} (Permission denied)"),
        (["data", "ppca", "--out", ro / "p.npy", "-n", "10"], 1, f"folder {ro} is not writable (Permission denied)"),
    ]
    try:
        arg = json.dumps([[str(a) for a in args] for args, _, _ in cases])
        done = subprocess.run([*UNPRIVILEGED, sys.executable, "-c", UNPRIVILEGED_SCRIPT, arg], capture_output=True,
                              text=True, env=ENV, timeout=120)
        assert done.returncode == 0, done.stderr
        for (args, code, message), (got, stdout, stderr, exc) in zip(cases, json.loads(done.stdout), strict=True):
            assert got == code and stdout == "" and "SystemExit" in exc, (args, stderr, exc)
            assert stderr.strip().splitlines()[-1].startswith("Error: ") and message in stderr, stderr
            assert "Traceback" not in stderr and (code == 2 or stderr.count("\n") == 1), stderr
        assert list(ro.iterdir()) == []
    finally:
        for path in (ckpt, data, ro):
            path.chmod(0o755)


def test_two_training_runs_writing_one_checkpoint_leave_one_whole_run(kit: Path, tmp_path: Path) -> None:
    """Two runs started on one --out: the run folder is claimed atomically, so at most one writes into it."""
    out = tmp_path / "shared.safetensors"
    args = ["train", "linear", "--data", kit / "x.npy", "--out", out, "--epochs", "3", "--quiet"]
    cmd = [sys.executable, "-m", "entropy_elbo", *map(str, args)]
    runs = [subprocess.Popen([*cmd, "--seed", str(s)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for s in (1, 2)]
    codes = [r.wait(timeout=120) for r in runs]
    assert sorted(codes) == [0, 1]  # the run folder is claimed by one run; the other is refused in one line
    refused = runs[codes.index(1)].stderr.read().decode()
    assert refused.count("\n") == 1 and refused.startswith("Error: --out "), refused
    assert "already holds a run" in refused or "another training run has just claimed" in refused, refused
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.run", "shared.safetensors"]
    assert sorted(p.name for p in (tmp_path / "shared.run").iterdir()) == ["log.jsonl", "run.json",
                                                                           "state.safetensors"]  # no temporary file
    loaded = load_model(out)
    seed = loaded.metadata["training"]["seed"]
    assert seed == (1, 2)[codes.index(0)]  # the winner's
    assert json.loads((tmp_path / "shared.run" / "run.json").read_text())["settings"]["seed"] == seed
    assert [r["epoch"] for r in read_log(tmp_path / "shared.run" / "log.jsonl")] == [1, 2, 3]  # one run's log
    # the file is exactly one run's result: redo that run in-process (what `train` does) and compare every tensor
    x = np.load(kit / "x.npy")
    settings = TrainConfig(**{**MODEL_DEFAULTS["linear"], "epochs": 3}, seed=seed)
    torch.manual_seed(seed)
    model = build_model(ModelConfig(kind="linear", data_dim=x.shape[1], latent_dim=2))
    train(model, x, settings)
    got = load_file(out)
    assert got.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(got[k], v, rtol=1e-4, atol=1e-5)


def test_concurrent_atomic_writes_never_expose_a_partial_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    models = []
    for seed in range(4):
        torch.manual_seed(seed)
        models.append(build_model(ModelConfig(kind="vae1", data_dim=30, latent_dim=3, hidden=(64, 64))))
    save_checkpoint(models[0], out)
    firsts = {float(m.fc_mu.weight[0, 0]) for m in models}
    stop, seen, errors = threading.Event(), [], []

    def writer(model) -> None:  # noqa: ANN001
        for _ in range(15):
            save_checkpoint(model, out)

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(float(load_model(out).model.fc_mu.weight[0, 0]))
            except Exception as err:  # noqa: BLE001 - any failure to read is the bug this test looks for
                errors.append(err)

    threads = [threading.Thread(target=writer, args=(m,)) for m in models]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert errors == [] and len(seen) > 0 and set(seen) <= firsts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
