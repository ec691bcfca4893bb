"""One hostile case in its own process: the real `python -m entropy_elbo`, a time bound, and the process's own
peak resident set (os.wait4's rusage is that child's alone), so a hang or a memory blow-up is a failed test
with its numbers, never a stuck or killed suite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Ran:
    """What one process did: exit code (negative: the signal that ended it), its output, peak MB and seconds."""

    returncode: int
    stdout: str
    stderr: str
    peak_mb: float
    seconds: float


def run_process(cmd: list[str], timeout: float = 60.0, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> Ran:
    """Run `cmd` with stdout and stderr to files; kill it (and fail) past `timeout` seconds."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **(env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=full_env, cwd=cwd)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout:
                os.kill(proc.pid, signal.SIGKILL)
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise AssertionError(f"{cmd[3:]} ran past {timeout} s")
            time.sleep(0.02)
        seconds = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Ran(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                   usage.ru_maxrss / 1024, seconds)


def cli(*args: object, timeout: float = 60.0, env: dict[str, str] | None = None, cwd: Path | None = None) -> Ran:
    """The real command line in its own process."""
    return run_process([sys.executable, "-m", "entropy_elbo", *map(str, args)], timeout, env, cwd)


def assert_one_line(ran: Ran, *words: str) -> str:
    """Exit 1, nothing on stdout, and stderr exactly one 'Error:' line holding every one of `words`."""
    assert ran.returncode == 1, (ran.returncode, ran.stderr[-2000:])
    assert ran.stdout == "", ran.stdout[-2000:]
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), ran.stderr[-2000:]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]
