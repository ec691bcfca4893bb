"""Outputs a new user reads literally (issue #23): units listed only for figures that exist, the prior's formula
as it was computed, a figure file checked before a long pass."""

from __future__ import annotations

import math

import pytest
import torch

from entropy_elbo.data import make_synthetic
from entropy_elbo.elbo import estimate
from entropy_elbo.models import ModelConfig, build_model
from entropy_elbo.report.estimate import prior_formula


def _estimate(kind: str):  # noqa: ANN202
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, data_dim=10, latent_dim=2))
    if kind == "vae2":  # a learned prior: ln alpha^2 away from 0
        with torch.no_grad():
            model.logalpha2.copy_(torch.tensor([0.5, -1.0]))
    return estimate(model, [make_synthetic("ppca", n=100, seed=0)], samples=2, seed=0)


def _has(d: dict, dotted: str) -> bool:
    head, _, rest = dotted.partition(".")
    return head in d and (not rest or _has(d[head], rest))


@pytest.mark.parametrize("kind", ["vae1", "linear"])
def test_other_units_lists_only_figures_the_object_has(kind: str) -> None:
    out = _estimate(kind).to_dict()
    assert out["other_units"] and all(_has(out, key) for key in out["other_units"])
    assert "relative_difference" in out["other_units"]


def test_the_prior_row_names_the_formula_that_gave_it() -> None:
    standard, learned = _estimate("vae1"), _estimate("vae2")
    assert standard.entropies["prior"] == pytest.approx(0.5 * 2 * math.log(2 * math.pi * math.e), rel=1e-12)
    assert prior_formula(standard) == "0.5 H log(2 pi e), prior N(0, I)"
    assert prior_formula(learned) == "0.5 log det(2 pi e A)"


def test_every_benchmark_with_a_goal_exits_nonzero_when_it_is_not_met() -> None:
    from pathlib import Path

    scripts = sorted((Path(__file__).parents[1] / "benchmarks").glob("*.py"))
    with_goal = [p for p in scripts if "NOT met" in p.read_text()]
    assert len(with_goal) >= 6
    for path in with_goal:
        text = path.read_text()
        assert "def main() -> bool:" in text and "sys.exit(0 if main() else 1)" in text, path.name


def test_plot_without_out_writes_beside_the_log_and_into_the_run(tmp_path) -> None:  # noqa: ANN001
    import shutil

    import numpy as np
    from click.testing import CliRunner

    from entropy_elbo.cli import main
    from entropy_elbo.launch import train_run

    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32))
    train_run("linear", out=tmp_path / "run", data=str(tmp_path / "x.npy"), epochs=2, progress=False, threads=1)
    shutil.copy(tmp_path / "run" / "log.jsonl", tmp_path / "monitor.jsonl")
    for given, written in ((tmp_path / "monitor.jsonl", tmp_path / "monitor.png"),
                           (tmp_path / "run", tmp_path / "run" / "elbo.png")):
        result = CliRunner().invoke(main, ["plot", str(given)])
        assert result.exit_code == 0 and written.stat().st_size > 1000, result.output


@pytest.mark.parametrize("command", ["collapse", "compare"])
def test_plot_without_matplotlib_fails_before_the_pass(command: str, monkeypatch, tmp_path) -> None:  # noqa: ANN001
    import sys

    from click.testing import CliRunner

    import entropy_elbo.measure
    from entropy_elbo.cli import main

    def no_pass(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the pass ran")

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    monkeypatch.setattr(entropy_elbo.measure, command, no_pass)
    result = CliRunner().invoke(main, [command, "ckpt.safetensors", "--data", "x.npy", "--plot",
                                       str(tmp_path / "f.png")])
    assert result.exit_code == 1 and "--plot needs matplotlib" in result.stderr, result.output


def test_select_progress_prints_lines_in_a_pipe(capsys, monkeypatch) -> None:  # noqa: ANN001
    from entropy_elbo import progress
    from entropy_elbo.report.progress import rows_progress

    ticks = iter(range(0, 10_000, 40))  # 40 s between readings of the clock: past the 30 s interval each time
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(ticks)))
    with rows_progress(300) as update:
        for done in (100, 200, 300):
            update(done)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" ")[1] for line in lines] == ["100/300", "200/300", "300/300"]
    assert "elapsed" in lines[0] and "done in" in lines[-1]


def test_make_test_skips_the_slow_marker_that_make_test_all_runs_and_readme_names() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).parents[1]
    make = root.joinpath("Makefile").read_text()
    recipe = {m.group(1): m.group(2) for m in re.finditer(r"^([\w-]+):[^\n]*\n((?:\t[^\n]*\n)+)", make, re.M)}
    assert 'pytest -m "not slow"' in recipe["test"] and "-m" not in recipe["test-all"].split("pytest")[-1]
    assert "slow:" in root.joinpath("pyproject.toml").read_text()
    assert "`slow`" in root.joinpath("README.md").read_text()
    assert root.joinpath("tests", "test_examples.py").read_text().count("@pytest.mark.slow") >= 6


def test_one_vocabulary_and_old_logs_still_read(tmp_path) -> None:  # noqa: ANN001
    import json

    from entropy_elbo.lightning import metrics
    from entropy_elbo.monitor import Monitor
    from entropy_elbo.plot import run_log

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2))
    x = torch.as_tensor(make_synthetic("ppca", n=100, seed=0))
    row = Monitor(model, x, samples=2).step(1)
    est = estimate(model, [x.numpy()], samples=2, seed=0).to_dict()
    assert {"entropy_elbo", "mc_elbo"} <= set(row) & set(est) and "elbo" not in row
    logged = metrics(row)
    assert logged["entropy_elbo/entropy_elbo"] == row["entropy_elbo"]
    assert logged["entropy_elbo/mc_elbo"] == row["mc_elbo"]
    old = {"epoch": 1, "elbo": -3.0, "entropy_elbo": -3.1, "relative_gap": 0.03, "latent_entropies": [0.5, 1.2]}
    (tmp_path / "old.jsonl").write_text(json.dumps(old) + "\n" + json.dumps({**old, "epoch": 2}) + "\n")
    assert [r["mc_elbo"] for r in run_log(tmp_path / "old.jsonl")] == [-3.0, -3.0]


def test_figure_titles_name_the_users_model_not_our_adapter() -> None:
    import entropy_elbo
    from entropy_elbo.plot import model_name

    class MyVAE(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = torch.nn.Linear(10, 4)  # mean and log-variance of H = 2
            self.decoder = torch.nn.Linear(2, 10)

        def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.encoder(x).chunk(2, dim=-1)

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return self.decoder(z)

    opened = entropy_elbo.open_checkpoint(MyVAE(), torch.randn(64, 10), needs="encoder")
    assert type(opened.model).__name__ != "MyVAE" and model_name(opened.model) == "MyVAE"
    assert model_name(build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2))) == "vae1"


def test_a_spread_of_only_rounding_is_drawn_as_zero_not_decades_down(tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("matplotlib")
    from entropy_elbo.compare import compare, plot_comparison, rounding_only

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2))
    x = make_synthetic("ppca", n=60, seed=0)
    cmp = compare(model, x, sizes=[10, 60], repeats=3, mc_samples=(2,))
    whole = {r.estimator: r for r in cmp.runs if r.n == 60}
    assert rounding_only(whole["entropy"]) and not rounding_only(whole["mc2"])  # n = N: the same rows each time
    assert not any(rounding_only(r) for r in cmp.runs if r.n == 10)
    assert plot_comparison(cmp, tmp_path / "c.png").stat().st_size > 1000


@pytest.mark.parametrize("gaps,linthresh", [([-900.0, -5000.0, 3.0, 4.71, -2.0, 0.3], 4.71),
                                             ([0.5, -0.02, 0.004], 0.01), ([None, 1e5, 0.2], 0.2)])
def test_relative_difference_ticks_never_crowd_zero(gaps: list, linthresh: float) -> None:
    from entropy_elbo.plot import symlog_ticks

    ticks, labels = symlog_ticks(gaps, linthresh)
    assert 0.0 in ticks and linthresh in ticks and -linthresh in ticks and len(labels) == len(ticks)
    assert not [t for t in ticks if 0 < abs(t) < linthresh]  # nothing inside the linear range but 0
    beyond = sorted({abs(t) for t in ticks if abs(t) > linthresh})
    assert all(b >= 3 * linthresh for b in beyond)
    assert all(q / p >= 10 for p, q in zip(beyond, beyond[1:], strict=False))  # a decade apart
    assert max(abs(t) for t in ticks) >= max(abs(g) for g in gaps if g is not None) / 10


def test_a_negative_entropy_is_a_bar_left_of_zero_not_an_empty_one() -> None:
    from entropy_elbo.latents import collapse
    from entropy_elbo.report.collapse import collapse_bars

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2))
    result = collapse(model, [make_synthetic("ppca", n=50, seed=0)])
    result.mean_entropy = [-2.0, 1.3]  # a sharp latent (negative entropy) and a collapsed one
    bars = {line[:5].strip(): line for line in collapse_bars(result, width=40)[1:]}
    assert bars["z0"].count("#") >= 10 and bars["z1"].count("#") >= 5
    first_z0 = bars["z0"].index("#")
    assert first_z0 < bars["z1"].index("#")  # the negative bar lies left of where the positive one starts
