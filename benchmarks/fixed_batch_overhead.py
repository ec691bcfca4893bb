"""What the per-epoch fixed batch costs a training run: `fixed_batch.measure` against an epoch of the trainer.

Each epoch `train` measures the entropy ELBO and the MC ELBO (up to 4 samples, no more than training draws) in eval
mode on one fixed batch of up to 1,000 rows (held-out rows when the run has a holdout). Two of the paper's presets,
one torch thread, CPU time (a shared CPU's waits for a core do not count), fastest of several:
- manifold (App. D.4): 25,000 training rows, D=100, H=20, 128/40 LeakyReLU, batch 512, 1 sample;
- fig1a (Fig. 1): pPCA, 5,000 training rows, D=5, linear VAE, batch 2000, 100 samples.
The epoch's CPU time is that of `train` (which includes the fixed batch); the overhead is measure / (epoch - measure).
Goal: under 5% of an epoch on each.
Run: python benchmarks/fixed_batch_overhead.py [--quick] [--json]
"""

from __future__ import annotations

import math
import sys
import time

import torch
from _common import emit, parse_args

from entropy_elbo.data import manifold, ppca
from entropy_elbo.fixed_batch import choose, measure
from entropy_elbo.models import ModelConfig, build_model
from entropy_elbo.presets import PRESETS
from entropy_elbo.train import TrainConfig, train

GOAL = 0.05


def cpu_seconds(fn) -> float:  # noqa: ANN001
    """CPU seconds of this process for fn()."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def case(name: str, n: int, epochs: int, repeats: int) -> dict[str, object]:
    """Epoch and fixed-batch CPU seconds of preset `name` on n training rows and n held-out rows."""
    p = PRESETS[name]
    x = torch.as_tensor(manifold(n=2 * n, seed=0) if name == "manifold" else ppca(n=2 * n, seed=0))
    config = TrainConfig(epochs=epochs, batch_size=int(p["batch_size"]), lr=float(p["lr"]),
                         samples=int(p["samples"]), seed=0, decay_fraction=0.0)
    model_config = ModelConfig(kind=str(p["model"]), data_dim=x.shape[1], latent_dim=int(p["latents"]),
                               hidden=tuple(p.get("hidden", ())), activation=str(p.get("activation", "relu")),
                               init_log_sigma2=float(p.get("init_log_sigma2", 0.0)))
    epoch = math.inf
    for _ in range(repeats):
        torch.manual_seed(0)
        model = build_model(model_config)
        epoch = min(epoch, cpu_seconds(lambda m=model: train(m, x[:n], config, heldout=x[n:], progress=False))
                    / epochs)
    fixed = choose(x[:n], x[n:], 0, config.samples)
    measure(model, fixed, model.eval)  # warm-up
    step = min(cpu_seconds(lambda: measure(model, fixed, model.eval)) for _ in range(5 * repeats))
    return {"preset": name, "n": n, "samples": config.samples, "fixed_rows": int(fixed.rows.shape[0]),
            "fixed_samples": fixed.samples, "epoch_cpu_s": epoch, "fixed_cpu_s": step,
            "overhead": step / (epoch - step)}


def main() -> bool:
    args = parse_args(__doc__)
    torch.set_num_threads(args.threads or 1)
    sizes = {"manifold": 5_000, "fig1a": 5_000} if args.quick else {"manifold": 25_000, "fig1a": 5_000}
    epochs, repeats = (2, 1) if args.quick else (3, 3)
    cases = [case(name, n, epochs, repeats) for name, n in sizes.items()]
    met = all(c["overhead"] < GOAL for c in cases)
    rows = []
    for c in cases:
        rows.append((f"{c['preset']} (N={c['n']:,}, {c['samples']} samples)",
                     f"epoch {1e3 * c['epoch_cpu_s']:.1f} ms CPU; fixed batch of {c['fixed_rows']:,} rows x "
                     f"{c['fixed_samples']} samples {1e3 * c['fixed_cpu_s']:.2f} ms = {100 * c['overhead']:.2f}% "
                     "of an epoch"))
    rows.append(("goal", f"< {100 * GOAL:.0f}% of an epoch on each: {'met' if met else 'NOT met'}"))
    emit("fixed_batch_overhead", {"cases": cases, "goal": GOAL, "met": met}, rows, args.json)
    return met


if __name__ == "__main__":
    sys.exit(0 if main() else 1)  # a goal not met fails the run
