"""Thread counts beyond the cores are clamped and said (issue 26, family 3): torch told to use 100000 threads
ended in SIGSEGV with no message. The mechanism is `threads.at_most_cores`, on both ways a count comes in."""

from __future__ import annotations

from pathlib import Path

import pytest
from process_kit import cli

from entropy_elbo import threads
from entropy_elbo.threads import usable_cores


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_huge_thread_count_is_clamped_to_the_cores_and_said(kit: Path, how: str) -> None:
    flag, env = (["--threads", "100000"], None) if how == "flag" else ([], {"OMP_NUM_THREADS": "100000"})
    ran = cli("estimate", kit / "vae1.safetensors", "--data", kit / "x.npy", "--samples", "2", "--json", *flag,
              env=env, timeout=60)
    assert ran.returncode == 0, (ran.returncode, ran.stderr[-2000:])
    given = "--threads 100000" if how == "flag" else "OMP_NUM_THREADS=100000"
    assert f"note: {given} asks for more threads than the {usable_cores()} cores" in ran.stderr
    assert ran.stdout.startswith("{")
    print(f"{how}: peak {ran.peak_mb:.0f} MB, {ran.seconds:.1f} s")  # noqa: T201 -- the issue asks for the figures


def test_counts_within_the_cores_pass_unchanged_and_above_are_clamped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "_SAID", set())
    said: list[str] = []
    monkeypatch.setattr(threads, "message", said.append)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [threads.choose_threads(1.0, n) for n in (1, 4, 5, 10**9)] == [1, 4, 4, 4]
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert threads.choose_threads(1.0) == 4
    assert said == [f"note: --threads {n} asks for more threads than the 4 cores this process may use; using 4"
                    for n in (5, 10**9)] + ["note: OMP_NUM_THREADS=7 asks for more threads than the 4 cores this "
                                            "process may use; using 4"]
