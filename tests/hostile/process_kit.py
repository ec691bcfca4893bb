"""One hostile case in its own process: the real `python -m entropy_elbo`, a time bound, and the process's own
peak resident set, so a hang or a memory blow-up is a failed test with its numbers, never a stuck or killed suite.

The peak is VmHWM of the process's own memory map (/proc/PID/status), written by the child as it exits and polled
while it runs (a crash leaves the last poll): rusage's ru_maxrss would count the pytest process it was forked
from, since Linux carries the high-water mark across exec."""

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
    """What one process did: exit code (negative: the signal that ended it), its output, peak MB, wall seconds and
    CPU seconds (user + system: steady on a loaded machine, where wall time is not)."""

    returncode: int
    stdout: str
    stderr: str
    peak_mb: float
    seconds: float
    cpu_seconds: float = 0.0


PEAK_AT_EXIT = """
import atexit, os, runpy, sys
def peak():
    with open("/proc/self/status") as fh:
        kb = next((line.split()[1] for line in fh if line.startswith("VmHWM:")), "0")
    with open(os.environ["HOSTILE_PEAK_FILE"], "w") as out:
        out.write(kb)
atexit.register(peak)
sys.argv = ["entropy-elbo", *sys.argv[1:]]
runpy.run_module("entropy_elbo", run_name="__main__", alter_sys=True)
"""


def high_water_kb(pid: int) -> int:
    """VmHWM of a running process, 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return int(next((line.split()[1] for line in fh if line.startswith("VmHWM:")), "0"))
    except (OSError, ValueError):
        return 0


def run_process(cmd: list[str], timeout: float = 60.0, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> Ran:
    """Run `cmd` with stdout and stderr to files; kill it (and fail) past `timeout` seconds."""
    peak_file = tempfile.NamedTemporaryFile(delete=False)  # noqa: SIM115 -- read after the child is gone
    peak_file.close()
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "HOSTILE_PEAK_FILE": peak_file.name,
                **(env or {})}
    peak_kb = 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=full_env, cwd=cwd)
        while True:
            peak_kb = max(peak_kb, high_water_kb(proc.pid))
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
        written = Path(peak_file.name).read_text().strip()
        Path(peak_file.name).unlink()
        peak_kb = max(peak_kb, int(written or 0))
        out.seek(0)
        err.seek(0)
        return Ran(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                   peak_kb / 1024, seconds, usage.ru_utime + usage.ru_stime)


def cli(*args: object, timeout: float = 60.0, env: dict[str, str] | None = None, cwd: Path | None = None) -> Ran:
    """The real command line in its own process, which writes its peak memory as it exits."""
    return run_process([sys.executable, "-c", PEAK_AT_EXIT, *map(str, args)], timeout, env, cwd)


def assert_one_line(ran: Ran, *words: str) -> str:
    """Exit 1, nothing on stdout, and stderr exactly one 'Error:' line holding every one of `words`."""
    assert ran.returncode == 1, (ran.returncode, ran.stderr[-2000:])
    assert ran.stdout == "", ran.stdout[-2000:]
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), ran.stderr[-2000:]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]
