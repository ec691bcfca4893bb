"""Fig. 1(c): VAE-3 (a variance network sigma^2(z)) on PCA-ring data over several seeds. Near convergence the
ELBO equals encoder entropy - prior entropy - expected decoder entropy (Thm. 3, eq. 22); the paper reports the
median and interquartile range of the relative difference, and an average absolute error below 0.5%.

    python examples/fig1c_vae3_ring.py [--quick] [--out DIR]
"""

from __future__ import annotations

import sys

import torch
from _common import Claims, gap_band, median_iqr, parser, pyplot, save, seeds, setup, suptitle

from entropy_elbo.data import ring
from entropy_elbo.elbo import estimate
from entropy_elbo.models import build_model, model_config
from entropy_elbo.train import TrainConfig, train

# Paper: 10,000 points, 2000 epochs, batch 2000, lr 1e-3, 100 runs. Here 500 points, batch 100 and lr 3e-3 with a
# cosine decay over the last 30% of the epochs (the trainer's default): 2000 Adam steps land near the stationary
# point in seconds per run.
SCALES = {
    "full": {"n": 500, "epochs": 400, "batch_size": 100, "lr": 3e-3, "seeds": 30},
    "quick": {"n": 500, "epochs": 400, "batch_size": 100, "lr": 3e-3, "seeds": 5},
}
TOLERANCE = 0.005  # the paper's 0.5%
DIFFERS = ("settings differ from the paper's: 500 points, 400 epochs of batch 100, lr 3e-3, our schedule, 30 runs "
           "(full)\nagainst the paper's 10,000 points, 2,000 epochs of batch 2000, lr 1e-3 constant, 100 runs")
MC_SAMPLES = 200


def measure(s: dict, seed: int) -> dict:
    """One VAE-3 run (seed: the initialization; the data is seed 0's): its relative difference and log rows."""
    x = ring(s["n"], seed=0)
    torch.manual_seed(seed)
    model = build_model(model_config("vae3", (10,), 2, init_log_sigma2=-2.0))
    config = TrainConfig(epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], samples=10, seed=seed)
    rows = train(model, x, config)
    est = estimate(model, [x], samples=MC_SAMPLES, generator=torch.Generator().manual_seed(seed))
    print(f"seed {seed}: MC ELBO ({MC_SAMPLES} samples) {est.mc_elbo:.4f} +- {est.mc_sampling_stderr:.4f} "
          f"(sampling), entropy ELBO (eq. 22, decoder entropy over the same samples) {est.entropy_elbo:.4f}, "
          f"relative difference {100 * est.relative_difference:+.3f}%")
    return {"relative_difference": est.relative_difference, "rows": rows}


def run(args) -> Claims:  # noqa: ANN001
    s = setup(args, SCALES)
    claims = Claims("Fig. 1(c)")
    runs = [measure(s, seed) for seed in seeds(args, s)]
    histories, rel = [r["rows"] for r in runs], [r["relative_difference"] for r in runs]
    med, q25, q75 = median_iqr(rel)
    mean_abs = sum(abs(r) for r in rel) / len(rel)
    claims.values.update(relative_difference=rel, median=med, q25=q25, q75=q75, mean_abs=mean_abs)
    claims.check("relative difference ELBO vs three entropies < 0.5% near convergence (median over runs)",
                 f"median {100 * med:+.3f}% (IQR {100 * q25:+.3f}% .. {100 * q75:+.3f}%) over {len(rel)} seeds",
                 abs(med) < TOLERANCE)
    claims.check("average absolute error below 0.5% (App. D.6, 100 runs)",
                 f"mean |relative difference| {100 * mean_abs:.3f}% over {len(rel)} seeds", mean_abs < TOLERANCE)

    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), constrained_layout=True)
    for seed, rows in zip(seeds(args, s)[:3], histories[:3], strict=True):
        epochs = [r["epoch"] for r in rows]
        line = top.plot(epochs, [r["mc_elbo"] for r in rows], lw=1, label=f"ELBO, seed {seed}")[0]
        top.plot(epochs, [r["entropy_elbo"] for r in rows], "--", color=line.get_color(),
                 label=f"three entropies (eq. 22), seed {seed}")
    top.set(xlabel="epoch", ylabel="nats per data point", title="VAE-3 on PCA-ring", ylim=(0, None))
    top.legend(fontsize=7)
    gap_band(bottom, histories, skip=len(histories[0]) // 10)
    bottom.set_title("relative difference (first 10% of epochs left out)")
    suptitle(fig, DIFFERS, s, f"{s['n']} points, {s['epochs']} epochs, {len(rel)} seeds")
    save(fig, args.out, "fig1c_vae3_ring.png")
    return claims


def main(argv: list[str] | None = None) -> int:
    return run(parser(__doc__.splitlines()[0]).parse_args(argv)).exit_code


if __name__ == "__main__":
    sys.exit(main())
