"""torch's thread count as `entropy_elbo.threads` chooses it, against 1 thread and all threads, side by side.

Two workloads: training steps of a small VAE-1 (pPCA, D=10: the CLI's defaults) and a large Monte Carlo ELBO
pass (manifold VAE-1, D=100, 2,000-row chunks x 20 samples). Each is timed quiet and under a competing load
that this script starts itself (one busy process per core). Goal: the choice is never slower than the
better of 1 and all threads (ratio <= 1, up to timing noise).
Run: python benchmarks/threads.py [--quick] [--json]
"""

from __future__ import annotations

import multiprocessing as mp
import time

import torch
from _common import best_of, emit, manifold_vae1, parse_args

from entropy_elbo.data import iter_batches, make_synthetic, manifold
from entropy_elbo.elbo import estimate
from entropy_elbo.models import ModelConfig, build_model
from entropy_elbo.threads import choose_threads, idle_cores, model_work, usable_cores
from entropy_elbo.train import TrainConfig, train


def _spin() -> None:
    while True:
        pass


def workloads(quick: bool) -> dict[str, tuple[float, object]]:
    """name -> (multiply-adds per step, the timed function)."""
    x_small = make_synthetic("ppca", n=2_500 if quick else 10_000, seed=0)
    torch.manual_seed(0)
    small = build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2))
    small_cfg = TrainConfig(epochs=1, batch_size=250, samples=10)
    x_large = manifold(n=2_000 if quick else 6_000, seed=0)
    large = manifold_vae1()
    return {
        "train VAE-1 pPCA (batch 250 x 10 samples)": (
            model_work(small, 250, 10), lambda: train(small, x_small, small_cfg)),
        "MC ELBO manifold VAE-1 (2,000 rows x 20 samples)": (
            model_work(large, 2_000, 20), lambda: estimate(large, iter_batches(x_large, 2_000), samples=20, seed=0)),
    }


def measure(fn: object, work: float, repeats: int) -> dict[str, object]:
    """Best of `repeats` rounds, each timing 1 thread, all threads and the choice in turn (so drift in the
    machine's load hits all three alike)."""
    cores = usable_cores()
    out: dict[str, object] = {"idle_cores": idle_cores(0.2)}
    chosen = choose_threads(work)
    configs = (("one", 1), ("all", cores), ("chosen", chosen))
    for _ in range(repeats):
        for name, n in configs:
            torch.set_num_threads(n)
            out[f"{name}_s"] = min(out.get(f"{name}_s", float("inf")), best_of(fn, 1))
    out["chosen_threads"] = chosen
    out["ratio"] = out["chosen_s"] / min(out["one_s"], out["all_s"])
    better = 1 if out["one_s"] <= out["all_s"] else cores
    out["chosen_is_the_better_setting"] = chosen == better  # then any ratio != 1 is timing noise
    return out


def main() -> None:
    args = parse_args(__doc__)
    repeats = 3 if args.quick else 5
    cores = usable_cores()
    results = []
    for name, (work, fn) in workloads(args.quick).items():
        fn()  # warm-up
        for load in ("quiet", "loaded"):
            spinners = []
            if load == "loaded":
                spinners = [mp.Process(target=_spin, daemon=True) for _ in range(cores)]
                for p in spinners:
                    p.start()
                time.sleep(0.5)
            try:
                results.append({"workload": name, "load": load, "work": work, **measure(fn, work, repeats)})
            finally:
                for p in spinners:
                    p.terminate()
                    p.join()
    rows = [("columns", f"seconds (best of {repeats}): 1 thread | all {cores} threads | chosen (n) | chosen / better")]
    for r in results:
        rows.append((f"{r['workload']}, {r['load']}",
                     f"{r['one_s']:.3f} | {r['all_s']:.3f} | {r['chosen_s']:.3f} ({r['chosen_threads']}) | "
                     f"{r['ratio']:.2f}  [{r['work']:.1e} multiply-adds/step; idle cores {r['idle_cores']:.1f}]"))
    worst = max(r["ratio"] for r in results)
    hits = sum(r["chosen_is_the_better_setting"] for r in results)
    rows.append(("chosen = the faster of 1 and all", f"{hits} of {len(results)} cases (goal: all; a ratio above 1 "
                 "when the choice is the faster setting itself is timing noise)"))
    rows.append(("worst chosen / better", f"{worst:.2f}"))
    emit("threads", {"results": results, "worst_ratio": worst, "chosen_is_the_better_setting": hits}, rows,
         args.json)


if __name__ == "__main__":
    main()
