"""Entropy ELBO against the Monte Carlo ELBO (the paper's 100 samples) of VAE-1 over the manifold data.

Goal: the entropy ELBO at least 100x faster. Also: a linear VAE's entropy ELBO does not grow with N.
Run: python benchmarks/estimate_speed.py [--quick] [--json]
"""

from __future__ import annotations

import sys
import time

import torch
from _common import best_of, emit, manifold_vae1, parse_args

from entropy_elbo.batching import resolve_batch_size
from entropy_elbo.data import iter_batches, manifold
from entropy_elbo.elbo import entropy_elbo_without_data, estimate
from entropy_elbo.models import ModelConfig, build_model

GOAL = 100.0


def vae1_ratio(n: int, samples: int, repeats: int) -> dict[str, object]:
    """Seconds of each estimator over the same n points, same chunks."""
    x = manifold(n=n, seed=0)  # (N, 100)
    model = manifold_vae1()
    rows = resolve_batch_size(None, model, 100, samples, "cpu")
    entropy_s = best_of(lambda: estimate(model, iter_batches(x, rows), samples=0), repeats)
    start = time.perf_counter()
    est = estimate(model, iter_batches(x, rows), samples=samples, seed=0)  # per-row streams, as the CLI draws
    mc_s = time.perf_counter() - start
    start = time.perf_counter()
    estimate(model, iter_batches(x, rows), samples=samples, generator=torch.Generator().manual_seed(0))
    generator_s = time.perf_counter() - start
    return {"n": n, "batch_size": rows, "samples": samples, "entropy_elbo_s": entropy_s, "mc_elbo_s": mc_s,
            "mc_elbo_one_generator_s": generator_s, "row_streams_cost": mc_s / generator_s,
            "speedup": mc_s / entropy_s, "goal": GOAL, "met": mc_s / entropy_s >= GOAL,
            "entropy_elbo": est.entropy_elbo, "mc_elbo": est.mc_elbo, "mc_stderr": est.mc_stderr}


def linear_scaling(sizes: list[int], repeats: int) -> list[dict[str, object]]:
    """A linear VAE's entropy ELBO from its parameters (no data) beside the full pass (stationarity, pPCA)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="linear", data_dim=100, latent_dim=20)).eval()
    out = []
    for n in sizes:
        x = manifold(n=n, seed=0)
        closed_s = best_of(lambda: entropy_elbo_without_data(model, 100), repeats * 10)
        pass_s = best_of(lambda x=x: estimate(model, iter_batches(x, 8192), samples=0), repeats)
        out.append({"n": n, "entropy_elbo_s": closed_s, "full_pass_s": pass_s})
    return out


def main() -> bool:
    args = parse_args(__doc__)
    n, repeats = (2_000, 3) if args.quick else (50_000, 5)
    vae = vae1_ratio(n, samples=100, repeats=repeats)
    linear = linear_scaling([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000], repeats=3)
    rows = [
        ("VAE-1 data", f"manifold N={vae['n']:,}, D=100, H=20, 128/40 LeakyReLU, chunks of {vae['batch_size']} rows"),
        ("entropy ELBO (samples=0)", f"{vae['entropy_elbo_s'] * 1e3:.1f} ms (best of {repeats})"),
        (f"MC ELBO ({vae['samples']} samples)", f"{vae['mc_elbo_s']:.2f} s (each row's own stream); "
         f"{vae['mc_elbo_one_generator_s']:.2f} s from one torch generator: x{vae['row_streams_cost']:.2f}"),
        ("speed-up", f"{vae['speedup']:.0f}x (goal >= {GOAL:.0f}x: {'met' if vae['met'] else 'NOT met'})"),
    ]
    for r in linear:
        rows.append((f"linear VAE N={r['n']:,}", f"entropy ELBO {r['entropy_elbo_s'] * 1e6:.0f} us (from parameters); "
                     f"full pass with a_h and pPCA {r['full_pass_s'] * 1e3:.1f} ms"))
    emit("estimate_speed", {"vae1": vae, "linear": linear}, rows, args.json)
    return bool(vae["met"])


if __name__ == "__main__":
    sys.exit(0 if main() else 1)  # a goal not met fails the run
