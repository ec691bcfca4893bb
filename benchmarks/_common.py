"""Shared by the benchmark scripts: the command line, the machine's description, timing and output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's entropy_elbo, not an installed one

import numpy as np  # noqa: E402
import torch  # noqa: E402

from entropy_elbo.models import ModelConfig, build_model  # noqa: E402


def parse_args(doc: str) -> argparse.Namespace:
    """--quick (small sizes, a few seconds), --json (one object on stdout), --threads."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true", help="Small sizes: a smoke run of a few seconds.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object on stdout.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own).")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, object]:
    """Where the figures come from."""
    return {
        "cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` wall-clock runs of fn, in seconds (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def manifold_vae1(seed: int = 0) -> torch.nn.Module:
    """VAE-1 for the manifold data as in the paper (D=100, H=20, 128/40 LeakyReLU, ln sigma^2 = -9), untrained."""
    torch.manual_seed(seed)
    config = ModelConfig(kind="vae1", data_dim=100, latent_dim=20, hidden=(128, 40), activation="leaky_relu",
                         init_log_sigma2=-9.0)
    return build_model(config).eval()


def emit(name: str, result: dict[str, object], rows: list[tuple[str, str]], as_json: bool) -> None:
    """Print the result as one JSON object, or as aligned lines with the machine first."""
    result = {"benchmark": name, "machine": machine(), **result}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    m = result["machine"]
    print(f"{name}: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), torch {m['torch']}, "
          f"device {m['device']}")
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def judge(checks: dict[str, tuple[float, float]]) -> None:
    """Print each ratio against its target, name -> (ratio, target), on stderr (stdout stays one JSON object with
    --json); exit 1 if any is missed, so a missed target fails the script."""
    for name, (ratio, target) in checks.items():
        verdict = "met" if ratio <= target else f"MISSED by {ratio / target - 1:.1%}"
        print(f"{name}: x{ratio:.3f} against the {target}x target: {verdict}", file=sys.stderr)
    if any(ratio > target for ratio, target in checks.values()):
        sys.exit(1)


def write_npy(path: Path, rows: int, fill: Callable[[int, int], np.ndarray], chunk: int = 250_000) -> None:
    """Write a float32 .npy of `rows` rows chunk by chunk (fill(start, stop) -> (stop-start, D)), bounded RAM."""
    first = fill(0, min(chunk, rows))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, *first.shape[1:]))
    out[: len(first)] = first
    for start in range(len(first), rows, chunk):
        stop = min(start + chunk, rows)
        out[start:stop] = fill(start, stop)
    out.flush()
    del out
