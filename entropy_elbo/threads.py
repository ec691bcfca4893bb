"""How many CPU threads torch uses: `--threads` > OMP_NUM_THREADS > a choice from the work's size and the idle cores.

Small models gain nothing from a second thread (each step's matrices are too small to split) and lose several
times their speed when another program holds the cores, since torch's threads then wait for each other. So
small work runs on one thread, and large work on as many threads as there are idle cores (read from
/proc/stat over 50 ms; never more than the cores this process may use).
"""

from __future__ import annotations

import os
import time

import torch

from entropy_elbo.errors import EntropyElboError
from entropy_elbo.progress import message

LARGE_WORK = 50_000_000  # multiply-adds per step from which a second thread pays (benchmarks/threads.py)


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def idle_cores(interval: float = 0.05) -> float | None:
    """Cores idle over the next `interval` seconds (from /proc/stat), or None where that cannot be read."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])  # idle + iowait, total (user ... steal)

    try:
        idle0, total0 = sample()
        time.sleep(interval)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (idle1 - idle0) / (total1 - total0)


def choose_threads(work: float, requested: int | None = None) -> int:
    """Threads for `work` multiply-adds per step: `requested` (--threads), else OMP_NUM_THREADS, else 1 for small
    work and the idle cores (at least 1) for large work."""
    cores = usable_cores()
    if requested is not None:
        if requested < 1:
            raise EntropyElboError(f"--threads {requested}: pass 1 or more (this machine lets us use {cores})")
        return at_most_cores(requested, f"--threads {requested}", cores)
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env:
        try:
            return at_most_cores(max(1, int(env)), f"OMP_NUM_THREADS={env}", cores)
        except ValueError:
            raise EntropyElboError(f"OMP_NUM_THREADS={env!r} is not a number of threads; set it to 1 or more, "
                                   "or unset it") from None
    if cores == 1 or work < LARGE_WORK:
        return 1
    idle = idle_cores()
    if idle is None:
        return cores
    return max(1, min(cores, int(idle + 0.5)))


def at_most_cores(n: int, given: str, cores: int) -> int:
    """`n` threads, clamped to the cores this process may use, said once on stderr when clamped (torch given
    100000 threads crashes with SIGSEGV; threads beyond the cores only wait for each other)."""
    if n <= cores:
        return n
    said = f"note: {given} asks for more threads than the {cores} cores this process may use; using {cores}"
    if said not in _SAID:
        _SAID.add(said)
        message(said)
    return cores


_SAID: set[str] = set()


def use_threads(work: float, requested: int | None = None) -> int:
    """Set torch's intra-op thread count by `choose_threads` (CPU work only); returns it."""
    n = choose_threads(work, requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


CONV_REUSE = 256  # a conv weight is applied at many image positions: ~16x16 per layer for 64x64 images


def model_work(model: torch.nn.Module, rows: int, samples: int = 1) -> float:
    """Multiply-adds of one step: one per weight per (row x sample) for an MLP, CONV_REUSE times that for convs."""
    work = 0.0
    for module in model.modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        work += own * (CONV_REUSE if isinstance(module, torch.nn.modules.conv._ConvNd) else 1)
    return work * rows * max(1, samples)
