"""Peak resident memory of `estimate` (and `collapse`, where this tree has it) over a .npy of 4 GiB.

The file is a slice of the manifold data repeated K times (written here, removed after), so every
per-point figure over the whole file must equal the one over the slice held in memory (a .npz, which
is read into RAM). Each command runs as a fresh process; its peak RSS comes from wait4's ru_maxrss.
Goal: peak RSS under 1 GiB and the same numbers.
Run: python benchmarks/memory.py [--quick] [--json] [--dir FOLDER]
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import emit, manifold_vae1, parse_args, write_npy

from entropy_elbo.checkpoints import save_checkpoint
from entropy_elbo.cli import main as cli_main
from entropy_elbo.data import manifold

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30
GOAL_RSS_MB = 1024.0
SLICE_ROWS = 50_000
MARGIN = GIB // 2  # disk left free beside the file


# Forked from this benchmark, a child would start with its resident set (numpy, torch, the slice) and
# ru_maxrss would count it; a bare launcher in between gives the command a clean start.
LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def run_child(args: list[str], threads: int | None) -> tuple[dict, float, float]:
    """Run `python -m entropy_elbo ARGS` as a fresh process: (its JSON, its peak RSS in MiB, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", LAUNCHER, str(rss_file), sys.executable, "-m", "entropy_elbo",
                              *args], capture_output=True, env=env)
        seconds = time.perf_counter() - start
        maxrss_kb, code = (int(v) for v in rss_file.read_text().split())
    if run.returncode != 0 or code != 0:
        raise SystemExit(f"entropy_elbo {' '.join(args)} failed: {run.stderr.decode()[-2000:]}")
    return json.loads(run.stdout), maxrss_kb / 1024, seconds


def largest_difference(a: object, b: object, path: str = "") -> tuple[float, str]:
    """Largest relative difference between the numbers of two JSON trees (skipping the row count `n`)."""
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = [largest_difference(a[k], b[k], f"{path}.{k}") for k in a if k in b and k != "n"]
        return max(diffs, default=(0.0, path))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return max((largest_difference(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=True))),
                   default=(0.0, path))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if a == b or (math.isnan(a) and math.isnan(b)):
            return 0.0, path
        return abs(a - b) / max(abs(a), abs(b)), path
    return (0.0, path) if a == b else (float("inf"), path)


def plan_size(folder: Path, want: int) -> tuple[int, str | None]:
    """Slices that fit: `want` bytes, or what the disk has free less a margin (with a message saying so)."""
    slice_bytes = SLICE_ROWS * 100 * 4
    free = shutil.disk_usage(folder).free
    if free - MARGIN < want:
        have = max(0, free - MARGIN)
        if have < slice_bytes:
            raise SystemExit(f"{folder}: only {free / GIB:.2f} GiB free; pass --dir on a disk with room")
        return have // slice_bytes, (f"only {free / GIB:.1f} GiB free in {folder}: scaled down from "
                                     f"{want / GIB:.1f} GiB to {have / GIB:.1f} GiB")
    return math.ceil(want / slice_bytes), None


def main() -> bool:
    import argparse

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--dir", default=tempfile.gettempdir())
    known, rest = extra.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    args = parse_args(__doc__)
    want = (GIB * 2 // 5) if args.quick else 4 * GIB
    folder = Path(tempfile.mkdtemp(prefix="entropy-elbo-memory-", dir=known.dir))
    try:
        repeats, note = plan_size(folder, want)
        part = manifold(n=SLICE_ROWS, seed=0)  # (50,000, 100)
        big, small, ckpt = folder / "big.npy", folder / "slice.npz", folder / "vae1.safetensors"
        write_npy(big, repeats * SLICE_ROWS, lambda start, stop: part[: stop - start], chunk=SLICE_ROWS)
        np.savez(small, x=part)
        save_checkpoint(manifold_vae1(), ckpt)
        commands = [["estimate", "--samples", "0"]]
        if "collapse" in cli_main.commands:
            commands.append(["collapse"])
        results, table = {}, [("file", f"{big.stat().st_size / GIB:.2f} GiB: the manifold slice of "
                                       f"{SLICE_ROWS:,} rows x 100 repeated {repeats} times")]
        if note:
            table.append(("note", note))
        if "collapse" not in cli_main.commands:
            table.append(("collapse", "not in this tree (no `collapse` command): estimate only"))
        for command in commands:
            name, options = command[0], command[1:]
            full, rss, seconds = run_child([name, str(ckpt), "--data", str(big), "--json", *options], args.threads)
            part_json, rss_small, _ = run_child([name, str(ckpt), "--data", str(small), "--key", "x", "--json",
                                                 *options], args.threads)
            diff, where = largest_difference(full, part_json)
            ok = rss < GOAL_RSS_MB
            results[name] = {"peak_rss_mb": rss, "peak_rss_slice_in_memory_mb": rss_small, "seconds": seconds,
                             "max_relative_difference": diff, "where": where, "rss_goal_met": ok}
            table.append((f"{name} over the file", f"peak RSS {rss:.0f} MiB (goal < {GOAL_RSS_MB:.0f}: "
                          f"{'met' if ok else 'NOT met'}), {seconds:.1f} s"))
            table.append((f"{name} vs slice in memory", f"largest relative difference {diff:.1e} ({where or '-'}); "
                          f"slice run peak RSS {rss_small:.0f} MiB"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    emit("memory", {"file_gib": repeats * SLICE_ROWS * 400 / GIB, "note": note, "commands": results}, table,
         args.json)
    return all(r["rss_goal_met"] for r in results.values())


if __name__ == "__main__":
    sys.exit(0 if main() else 1)  # a goal not met fails the run
