"""Training writes only what is its own: a new run replaces no existing file (`RunFolder.check_fresh`, every file a
run writes), a run folder's paths stay where the run writes them (`run_for_resume`), one process at a time trains a
run (an flock that dies with its process), and a resume checks its data is the one it started on (fingerprint)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hostile_helpers import assert_user_error, invoke

from entropy_elbo.errors import EntropyElboError
from entropy_elbo.runs import LOG, MODEL, SETTINGS, STATE, append_log, fingerprint, run_for_out, run_for_resume

TRAIN = ["train", "linear", "--batch-size", "25", "--samples", "1", "--quiet"]
PRECIOUS = b"someone's thesis, not a checkpoint\n"


@pytest.fixture(scope="module")
def started(kit: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch run on a copy of the kit's data, to copy and resume."""
    d = tmp_path_factory.mktemp("started")
    shutil.copy(kit / "x.npy", d / "x.npy")
    result = invoke([*TRAIN, "--data", d / "x.npy", "--out", d / "run", "--epochs", "1"])
    assert result.exit_code == 0, result.stderr
    return d


def fresh_copy(started: Path, tmp_path: Path) -> Path:
    """The started run and its data in a folder of this test's own, run.json pointing at the copied data."""
    run = tmp_path / "run"
    shutil.copytree(started / "run", run)
    shutil.copy2(started / "x.npy", tmp_path / "x.npy")
    stored = json.loads((run / SETTINGS).read_text())
    stored["settings"]["data"] = str(tmp_path / "x.npy")
    (run / SETTINGS).write_text(json.dumps(stored))
    return run


@pytest.mark.parametrize("where", ["checkpoint.safetensors", "checkpoint.run/" + LOG, "folder/" + MODEL,
                                   "folder/" + STATE, "folder/" + LOG, "notes.txt"])
def test_a_new_run_replaces_no_existing_file(kit: Path, tmp_path: Path, where: str) -> None:
    """Whatever file of the run's outputs exists already is left byte for byte, and the line names it."""
    victim = tmp_path / where
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_bytes(PRECIOUS)
    out = tmp_path / where.split("/")[0]
    out = out.with_suffix(".safetensors") if out.suffix == ".run" else out
    named = "is an existing file, not a run folder" if where == "notes.txt" else f"{victim} already exists"
    assert_user_error(invoke([*TRAIN, "--data", kit / "x.npy", "--out", out, "--epochs", "1"]), 1, str(out), named)
    assert victim.read_bytes() == PRECIOUS
    assert where == "notes.txt" or not run_for_out(out).settings.exists()  # nothing was claimed either


def test_every_file_a_run_writes_is_checked_before_it_starts(tmp_path: Path) -> None:
    for out in (tmp_path / "f", tmp_path / "c.safetensors"):
        run = run_for_out(out)
        assert set(run.outputs) == {run.settings, run.log, run.state, run.checkpoint}
        for path in run.outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(PRECIOUS)
            with pytest.raises(Exception, match=f"{path} already exists"):
                run.check_fresh(out)
            path.unlink()
        run.check_fresh(out)


ESCAPES = ["../thesis.txt", "/etc/passwd", "sub/../../thesis.txt", "model.safetensors/../../thesis.txt",
           "../run2/model.safetensors", "./log.jsonl", "", 7, None]


@pytest.mark.parametrize("named", ESCAPES)
def test_a_run_json_cannot_point_the_checkpoint_outside_the_run(started: Path, tmp_path: Path,
                                                                named: object) -> None:
    run = fresh_copy(started, tmp_path)
    (tmp_path / "thesis.txt").write_bytes(PRECIOUS)
    stored = json.loads((run / SETTINGS).read_text())
    stored["checkpoint"] = named
    (run / SETTINGS).write_text(json.dumps(stored))
    assert_user_error(invoke([*TRAIN[:2], "--resume", run, "--epochs", "2"]), 1, "run.json",
                      "outside the places this run writes")
    assert (tmp_path / "thesis.txt").read_bytes() == PRECIOUS


def test_the_two_places_a_run_writes_its_checkpoint_are_accepted(tmp_path: Path) -> None:
    for out in (tmp_path / "f", tmp_path / "c.safetensors"):
        made = run_for_out(out).create()
        (made.folder / SETTINGS).write_text(json.dumps({"checkpoint": os.path.relpath(made.checkpoint, made.folder)}))
        assert run_for_resume(out) == made


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


def test_a_run_is_trained_by_one_process_and_a_killed_one_leaves_no_stuck_lock(started: Path,
                                                                               tmp_path: Path) -> None:
    run = fresh_copy(started, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert_user_error(invoke([*TRAIN[:2], "--resume", run, "--epochs", "2"]), 1, str(run),
                          "another process is training this run now")
        assert (run / LOG).read_text().count("\n") == 1  # untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    result = invoke([*TRAIN[:2], "--resume", run, "--epochs", "2"])  # the kernel dropped the dead process's lock
    assert result.exit_code == 0, result.stderr
    epochs = [json.loads(line)["epoch"] for line in (run / LOG).read_text().splitlines()]
    assert epochs == [1, 2]


def test_the_lock_is_held_for_the_run_and_released_after(started: Path, tmp_path: Path) -> None:
    run = fresh_copy(started, tmp_path)
    release = run_for_resume(run).claim()
    try:
        with pytest.raises(Exception, match="another process"):
            run_for_resume(run).claim()
    finally:
        release()
    run_for_resume(run).claim()()


def change_head(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[0, 0] += 1
    return x


def change_tail(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[-1, -1] += 1
    return x


CHANGES = {  # new data written over the run's file -> what the refusal names
    "values at the start": (change_head, "first MiB differs"),
    "values at the end": (change_tail, "last MiB differs"),
    "more rows": (lambda x: np.concatenate([x, x[:5]]), "size 928 -> 1008 bytes"),
    "other columns": (lambda x: x[:, :3].copy(), "size"),
    "shuffled rows": (lambda x: x[::-1].copy(), "first MiB differs"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_resume_after_the_data_changed_says_what_changed(started: Path, tmp_path: Path, change: str) -> None:
    run = fresh_copy(started, tmp_path)
    x = np.load(tmp_path / "x.npy")
    np.save(tmp_path / "x.npy", CHANGES[change][0](x))
    line = assert_user_error(invoke([*TRAIN[:2], "--resume", run, "--epochs", "2"]), 1, "x.npy",
                             "changed since the run started", CHANGES[change][1])
    assert "start a new run" in line
    assert (run / LOG).read_text().count("\n") == 1


def test_resume_after_a_touch_alone_carries_on_with_a_note(started: Path, tmp_path: Path) -> None:
    run = fresh_copy(started, tmp_path)
    before = fingerprint(str(tmp_path / "x.npy"))
    later = time.time() + 100
    os.utime(tmp_path / "x.npy", (later, later))
    after = fingerprint(str(tmp_path / "x.npy"))
    assert before["mtime_ns"] != after["mtime_ns"] and {**before, "mtime_ns": 0} == {**after, "mtime_ns": 0}
    result = invoke([*TRAIN[:2], "--resume", run, "--epochs", "2"])
    assert result.exit_code == 0 and "was modified since the run started" in result.stderr, result.stderr


def test_fingerprint_is_independent_of_file_size_and_sees_both_ends(tmp_path: Path) -> None:
    """Hashes of the first and last MiB, checked against hashlib on the bytes themselves."""
    import hashlib
    raw = np.random.default_rng(0).bytes(3 * 2**20 + 17)
    (tmp_path / "big.bin").write_bytes(raw)
    found = fingerprint(str(tmp_path / "big.bin"))
    assert found["size"] == len(raw)
    assert found["head"] == hashlib.sha256(raw[:2**20]).hexdigest()
    assert found["tail"] == hashlib.sha256(raw[-2**20:]).hexdigest()
    assert fingerprint("ppca") is None  # a synthetic set's name: regenerated from its seed


def test_the_log_is_never_appended_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "thesis.txt").write_bytes(PRECIOUS)
    (tmp_path / LOG).symlink_to(tmp_path / "thesis.txt")
    with pytest.raises(EntropyElboError, match="not a link"):
        append_log(tmp_path / LOG, {"epoch": 1})
    assert (tmp_path / "thesis.txt").read_bytes() == PRECIOUS
    append_log(tmp_path / "own.jsonl", {"epoch": 1})
    append_log(tmp_path / "own.jsonl", {"epoch": 2})
    assert [json.loads(line) for line in (tmp_path / "own.jsonl").read_text().splitlines()] == [{"epoch": 1},
                                                                                               {"epoch": 2}]
