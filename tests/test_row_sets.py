"""estimate/collapse/compare --rows train|holdout|all on a run trained with --holdout: by default the rows the
model did not train on (said in a note), checked against the split `train` itself drew (data.split_indices)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import entropy_elbo
from entropy_elbo.cli import main
from entropy_elbo.data import split_indices
from entropy_elbo.launch import train_run

N, HOLDOUT, SEED = 300, 0.25, 3


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    folder = tmp_path_factory.mktemp("rows")
    x = np.random.default_rng(0).normal(size=(N, 4)).astype(np.float32)
    np.save(folder / "x.npy", x)
    train_run("linear", out=folder / "run", data=str(folder / "x.npy"), holdout=HOLDOUT, epochs=1, batch_size=100,
              seed=SEED, progress=False, threads=1)
    return folder / "run", folder / "x.npy", x


def cli(*args: str) -> tuple[int, dict, str]:
    result = CliRunner().invoke(main, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout) if result.exit_code == 0 else {}, result.stderr


@pytest.mark.parametrize("rows", [None, "holdout", "train", "all"])
def test_estimate_measures_the_rows_the_split_picks(run: tuple[Path, Path, np.ndarray], rows: str | None) -> None:
    folder, path, x = run
    train_idx, held_idx = split_indices(N, HOLDOUT, SEED)  # the split train drew
    want = {None: held_idx, "holdout": held_idx, "train": train_idx, "all": np.arange(N)}[rows]
    code, got, err = cli("estimate", str(folder), "--data", str(path), "--samples", "5", "--batch-size", "50",
                         *(["--rows", rows] if rows else []))
    assert code == 0, err
    # the sampled ELBO depends on the rows (a linear VAE's entropy ELBO does not: Cor. 1)
    direct = entropy_elbo.estimate(folder, x[want], samples=5, batch_size=50, rows="all")
    assert got["n"] == len(want) and got["mc_elbo"] == pytest.approx(direct.mc_elbo, rel=1e-12)
    other = entropy_elbo.estimate(folder, x[np.setdiff1d(np.arange(N), want)[:len(want)]], samples=5,
                                  batch_size=50, rows="all") if rows != "all" else None
    assert other is None or abs(other.mc_elbo - got["mc_elbo"]) > 1e-6  # the check can tell the rows apart
    assert got["extra"].get("rows") == (None if rows == "all" else rows or "holdout")
    assert ("held out by training" in err) == (rows is None or rows == "holdout")


def test_other_data_is_measured_whole_by_default_and_refused_when_a_set_is_named(
        run: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    folder, _, x = run
    np.save(tmp_path / "y.npy", x[:200])
    code, got, err = cli("estimate", str(folder), "--data", str(tmp_path / "y.npy"), "--samples", "0")
    assert code == 0 and got["n"] == 200 and "its split does not apply" in err
    code, _, err = cli("estimate", str(folder), "--data", str(tmp_path / "y.npy"), "--rows", "train")
    assert code == 1 and err.count("\n") == 1 and "has 200 rows but the run split 300" in err and "--rows all" in err


def test_collapse_and_compare_take_rows(run: tuple[Path, Path, np.ndarray]) -> None:
    folder, path, _ = run
    code, got, err = cli("collapse", str(folder), "--data", str(path), "--rows", "train")
    assert code == 0, err
    assert got["n"] == N - round(N * HOLDOUT)
    code, got, err = cli("compare", str(folder), "--data", str(path), "--sizes", "10,75", "--repeats", "2",
                         "--mc-samples", "1")
    assert code == 0 and "held out by training" in err
    code, _, err = cli("compare", str(folder), "--data", str(path), "--sizes", "76", "--repeats", "2")
    assert code == 1 and "76" in err  # only the 75 held-out rows to draw from


def test_a_run_without_a_split_refuses_a_named_set(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    train_run("linear", out=tmp_path / "run", data=str(tmp_path / "x.npy"), epochs=1, progress=False, threads=1)
    code, got, _ = cli("estimate", str(tmp_path / "run"), "--data", str(tmp_path / "x.npy"), "--samples", "0")
    assert code == 0 and got["n"] == 50
    code, _, err = cli("estimate", str(tmp_path / "run"), "--data", str(tmp_path / "x.npy"), "--rows", "holdout")
    assert code == 1 and "records no train/held-out split" in err
