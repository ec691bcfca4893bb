"""A resumed run's files are checked whole before anything is written (issue 26, family 2): the run state's
fields (epoch, random states, optimizer JSON), run.json's settings (their JSON types and ranges) and the log's
rows against the state's epoch. Each crafted run is a copy of one real two-epoch run with one field broken; the
refusal is one line naming the file, and every file of the run is left byte for byte."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_helpers import assert_user_error, invoke
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from entropy_elbo.runs import LOG, SETTINGS, STATE

TRAIN = ["train", "linear", "--batch-size", "25", "--samples", "1", "--quiet"]


@pytest.fixture(scope="module")
def trained(kit: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-epoch run (log rows 1 and 2, state after epoch 2) on a copy of the kit's data."""
    d = tmp_path_factory.mktemp("trained")
    shutil.copy(kit / "x.npy", d / "x.npy")
    result = invoke([*TRAIN, "--data", d / "x.npy", "--out", d / "run", "--epochs", "2"])
    assert result.exit_code == 0, result.stderr
    return d / "run"


def restate(path: Path, meta: Callable[[dict], None] | None = None, tensors: Callable[[dict], None] | None = None
            ) -> None:
    """Rewrite a run state with its metadata and/or tensors changed."""
    with safe_open(str(path), framework="pt") as fh:
        m = dict(fh.metadata())
    t = load_file(str(path))
    if meta:
        meta(m)
    if tensors:
        tensors(t)
    save_file(t, str(path), metadata=m)


def torn_last_row(run: Path) -> None:
    text = (run / LOG).read_text()
    (run / LOG).write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])


def swapped_rows(run: Path) -> None:
    rows = (run / LOG).read_text().splitlines()
    (run / LOG).write_text("\n".join(rows[::-1]) + "\n")


def settings(**changes: object) -> Callable[[Path], None]:
    def change(run: Path) -> None:
        stored = json.loads((run / SETTINGS).read_text())
        stored["settings"].update(changes)
        (run / SETTINGS).write_text(json.dumps(stored))

    return change


CASES = {
    "negative epoch": (lambda run: restate(run / STATE, meta=lambda m: m.update(epoch="-3")),
                       [STATE, "epoch -3, which is below 0"]),
    "no RNG state": (lambda run: restate(run / STATE, tensors=lambda t: t.pop("rng.generator")),
                     [STATE, "lacks its random state", "rng.generator"]),
    "optimizer JSON not a list": (lambda run: restate(run / STATE, meta=lambda m: m.update(param_groups="{}")),
                                  [STATE, "'param_groups' is not a JSON list"]),
    "torn log row of the saved epoch": (torn_last_row, [LOG, "epochs 1 to 1", "saved after epoch 2", "line 2"]),
    "log rows out of order": (swapped_rows, [LOG, "epochs 1 to 0", "line 1 is torn or out of order"]),
    "epochs a string": (settings(epochs="ten"), [SETTINGS, "'epochs' is \"ten\" \\(str\\); it must be an integer"]),
    "epochs true": (settings(epochs=True), [SETTINGS, "'epochs' is true"]),
    "lr a list": (settings(lr=[1]), [SETTINGS, "'lr' is \\[1\\]"]),
    "batch size 0": (settings(batch_size=0), [SETTINGS, "batch"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_run_is_refused_before_anything_is_written(trained: Path, tmp_path: Path, case: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    break_it, names = CASES[case]
    break_it(run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    line = assert_user_error(invoke([*TRAIN, "--resume", run, "--epochs", "4"]), 1, *names)
    assert "start a new run" in line or "restore it" in line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_the_sound_run_resumes(trained: Path, tmp_path: Path) -> None:
    """The control: the same copy, unbroken, resumes to epoch 3 with rows 1, 2, 3."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    result = invoke([*TRAIN, "--resume", run, "--epochs", "3"])
    assert result.exit_code == 0, result.stderr
    assert [json.loads(r)["epoch"] for r in (run / LOG).read_text().splitlines()] == [1, 2, 3]
