"""CPU time of `entropy-elbo --help`, `--version`, `train --help` and a usage error, beside `import torch` and
a bare `python -c pass`, measured side by side in one run (each the fastest of a few child processes, user +
system CPU seconds). Goal: every line under 0.3 s of CPU, i.e. the CLI never imports torch to print help.
Exits 1 when the goal is not met. Run: python benchmarks/startup.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 0.3
CLI = [sys.executable, "-m", "entropy_elbo"]
COMMANDS = {
    "entropy-elbo --help": [*CLI, "--help"],
    "entropy-elbo --version": [*CLI, "--version"],
    "entropy-elbo train --help": [*CLI, "train", "--help"],
    "entropy-elbo estimate (usage error)": [*CLI, "estimate"],
}
REFERENCES = {"python -c pass": [sys.executable, "-c", "pass"],
              "python -c 'import torch'": [sys.executable, "-c", "import torch"]}


def cpu_seconds(command: list[str], repeats: int) -> float:
    """The least user + system CPU time of `repeats` runs of command, in seconds."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    best = float("inf")
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return best


def main() -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Fewer repeats.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object on stdout.")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    times = {name: cpu_seconds(cmd, repeats) for name, cmd in {**COMMANDS, **REFERENCES}.items()}
    torch_s = times["python -c 'import torch'"]
    met = all(times[name] < GOAL_S for name in COMMANDS)
    if args.json:
        print(json.dumps({"benchmark": "startup", "cpu_s": times, "goal_s": GOAL_S, "met": met}, indent=2))
    else:
        print(f"startup: CPU seconds (user + system, best of {repeats}; OMP_NUM_THREADS=1)")
        width = max(map(len, times))
        for name, seconds in times.items():
            goal = f"  goal < {GOAL_S} s: {'met' if seconds < GOAL_S else 'NOT met'}" if name in COMMANDS else ""
            print(f"  {name:<{width}}  {seconds:6.3f} s  ({seconds / torch_s:5.2f} x import torch){goal}")
    return met


if __name__ == "__main__":
    sys.exit(0 if main() else 1)  # a goal not met fails the run
