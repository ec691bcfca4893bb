"""Starting and resuming runs from Python (`train_run`) the same way as `entropy-elbo train`; the shared flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from entropy_elbo.cli import main
from entropy_elbo.data import make_synthetic, save_array
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.launch import train_run
from entropy_elbo.presets import PRESETS
from entropy_elbo.runs import read_log

SMALL = {"epochs": 2, "batch_size": 100, "samples": 2, "latents": 2, "seed": 5}


@pytest.fixture()
def data(tmp_path: Path) -> str:
    save_array(make_synthetic("ppca", n=300, seed=2), tmp_path / "x.npy")
    return str(tmp_path / "x.npy")


def test_the_api_and_the_cli_start_and_resume_a_run_the_same_way(tmp_path: Path, data: str) -> None:
    api = train_run("vae1", data=data, out=tmp_path / "api", progress=False, **SMALL)
    assert [r["epoch"] for r in api.history] == [1, 2] and api.settings["lr"] == 3e-3  # vae1's default lr
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    res = CliRunner().invoke(main, ["train", "vae1", "--data", data, *flags, "--quiet", "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    a, c = load_file(tmp_path / "api" / "model.safetensors"), load_file(tmp_path / "cli" / "model.safetensors")
    assert a.keys() == c.keys() and all(torch.equal(a[k], c[k]) for k in a)
    stored = json.loads((tmp_path / "api" / "run.json").read_text())["settings"]
    assert stored == json.loads((tmp_path / "cli" / "run.json").read_text())["settings"]
    more = train_run(resume=tmp_path / "api", epochs=3, progress=False)  # no model: the run holds it
    assert [r["epoch"] for r in read_log(more.run.log)] == [1, 2, 3] and more.settings["seed"] == 5
    res = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "cli"), "--epochs", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    a, c = load_file(tmp_path / "api" / "model.safetensors"), load_file(tmp_path / "cli" / "model.safetensors")
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_a_resume_keeps_its_settings_and_model(tmp_path: Path, data: str) -> None:
    train_run("linear", data=data, out=tmp_path / "r", progress=False, **SMALL)
    with pytest.raises(EntropyElboError, match=r"--lr 0.5 differs from the run's 0.01"):
        train_run(resume=tmp_path / "r", lr=0.5)
    with pytest.raises(EntropyElboError, match=r"the run trains linear, not vae1; run `train linear --resume`"):
        train_run("vae1", resume=tmp_path / "r")
    with pytest.raises(EntropyElboError, match=r"unknown setting 'learning_rate'"):
        train_run("linear", out=tmp_path / "s", learning_rate=0.1)


def test_a_preset_belongs_to_its_model() -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["train", "vae1", "--preset", "fig1a", "--out", "never"])
    assert res.exit_code == 1
    assert res.output == ("Error: --preset fig1a trains linear, not vae1; run `train linear --preset fig1a` "
                          "(or drop MODEL)\n")
    assert PRESETS["fig1a"]["model"] == "linear"
    res = runner.invoke(main, ["train", "--out", "never"])
    assert res.exit_code == 1
    assert res.output == "Error: train: name the MODEL (conv, linear, vae1, vae2, vae3) or a --preset\n"


def test_version_short_help_and_shared_checks() -> None:
    from importlib.metadata import version

    runner = CliRunner()
    res = runner.invoke(main, ["--version"])
    assert res.exit_code == 0 and res.output == f"entropy-elbo {version('entropy-elbo')}\n"
    assert runner.invoke(main, ["estimate", "-h"]).output == runner.invoke(main, ["estimate", "--help"]).output
    for command in ("estimate", "data", "train", "select", "compare"):  # one --seed check everywhere
        res = runner.invoke(main, [command, "--seed", "-1"])
        assert res.exit_code == 2 and "Invalid value for '--seed': -1 is not in the range" in res.output, command
    for command in ("train", "estimate", "inspect", "collapse", "compare"):  # one --activation check everywhere
        res = runner.invoke(main, [command, "--activation", "sigmoid"])
        assert res.exit_code == 2 and "Invalid value for '--activation': 'sigmoid' is not one of" in res.output
    for command in ("estimate", "train", "select", "collapse", "compare", "demo"):  # one --device default
        option = next(p for p in main.commands[command].params if p.name == "device")
        assert option.default == "auto", command
    for command in ("collapse", "select", "compare"):
        res = runner.invoke(main, [command, *(["ckpt"] if command != "select" else []), "--data", "x.npy",
                                   "--plot", "/no/such/folder/f.png"])
        assert res.output == ("Error: --plot /no/such/folder/f.png: folder /no/such/folder does not exist; "
                              "create it first\n")


def test_model_modules_import_from_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from entropy_elbo.checkpoints.user import build_user_model

    pkg = tmp_path / "ux16pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text("import torch\n\ndef build(width=3):\n    return torch.nn.Linear(2, width)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])  # as a console script
    model = build_user_model("ux16pkg.models:build", {"width": 5})
    assert isinstance(model, torch.nn.Linear) and model.out_features == 5
    assert str(tmp_path) not in sys.path  # the import path is left as it was
    with pytest.raises(EntropyElboError, match=r"searched the working directory .* first, as python -m does"):
        build_user_model("ux16_no_such_pkg.models:build", {})


def test_a_linear_vaes_entropy_elbo_needs_no_data(tmp_path: Path, data: str) -> None:
    train_run("linear", data=data, out=tmp_path / "lin", progress=False, **SMALL)
    train_run("vae1", data=data, out=tmp_path / "mlp", progress=False, **SMALL)
    runner = CliRunner()
    lin = str(tmp_path / "lin" / "model.safetensors")
    alone = runner.invoke(main, ["estimate", lin, "--samples", "0", "--json"])
    assert alone.exit_code == 0, alone.output
    with_data = json.loads(runner.invoke(main, ["estimate", lin, "--samples", "0", "--data", data, "--json"]).stdout)
    got = json.loads(alone.stdout)
    assert got["entropy_elbo"] == pytest.approx(with_data["entropy_elbo"], rel=1e-12) and got["n"] == 0
    assert got["entropies"] == pytest.approx(with_data["entropies"], rel=1e-12)
    res = runner.invoke(main, ["estimate", lin])
    assert res.exit_code == 1
    assert res.output == "Error: estimate: pass --data (only --samples 0 of a linear VAE needs none)\n"
    res = runner.invoke(main, ["estimate", str(tmp_path / "mlp" / "model.safetensors"), "--samples", "0"])
    assert res.exit_code == 1 and "needs --data (only a linear VAE's comes from its parameters alone)" in res.output


def test_python_training_sets_the_threads_the_cli_sets_for_the_same_work(tmp_path: Path, data: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from entropy_elbo import threads
    from entropy_elbo.models import build_model, model_config
    from entropy_elbo.train import TrainConfig, train

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "idle_cores", lambda interval=0.05: 3.0)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]

    def after(call: Callable[[], object]) -> int:
        torch.set_num_threads(5)  # neither the choice for small work (1) nor for large (3 idle cores)
        call()
        return torch.get_num_threads()

    def cli(name: str, *more: str) -> None:
        args = ["train", "vae1", "--data", data, *flags, "--quiet", "--out", str(tmp_path / name), *more]
        assert CliRunner().invoke(main, args).exit_code == 0

    try:
        for large, want in ((False, 1), (True, 3)):  # a step's work below or above LARGE_WORK
            monkeypatch.setattr(threads, "LARGE_WORK", 1 if large else threads.LARGE_WORK)
            api = after(partial(train_run, "vae1", data=data, out=tmp_path / f"api{large}", progress=False, **SMALL))
            assert api == after(partial(cli, f"cli{large}")) == want
            model = build_model(model_config("vae1", (10,), 2))
            x = make_synthetic("ppca", n=100, seed=0)
            assert after(partial(train, model, x, TrainConfig(epochs=1, batch_size=100, samples=2))) == want
        assert after(partial(train_run, "vae1", data=data, out=tmp_path / "api2", threads=2, progress=False,
                             **SMALL)) == after(partial(cli, "cli2", "--threads", "2")) == 2
    finally:
        torch.set_num_threads(1)


def test_the_trainer_draws_nothing_itself(tmp_path: Path, data: str) -> None:
    """Training from Python loads neither rich nor click; its messages go to the `notify` it is given."""
    code = ("import sys, json; from entropy_elbo.launch import train_run; "
            f"r = train_run('linear', data={data!r}, out={str(tmp_path / 'r')!r}, epochs=1, progress=False); "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'click', 'entropy_elbo') "
            "and (m.split('.')[0] != 'entropy_elbo' or m in ('entropy_elbo.report', 'entropy_elbo.cli')))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert json.loads(done.stdout) == []
    Path(data).touch()  # a note on resume, said through `notify`
    heard: list[str] = []
    train_run(resume=tmp_path / "r", epochs=2, progress=False, notify=heard.append)
    assert heard == [f"note: {data} was modified since the run started, but its size and the hashes of its first "
                     "and last MiB are unchanged; resuming"]
