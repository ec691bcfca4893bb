"""Fig. 5 and 6 on the artificial manifold data (D=100): a VAE-1's ELBO over training beside the sum of three
entropies (Thm. 2, eq. 14), then, for the trained model, the spread of each ELBO estimator over random subsets
of n points (Fig. 6): the entropy ELBO's variance is far below the Monte Carlo ELBO's.

    python examples/fig5_6_manifold.py [--quick] [--out DIR]
"""

from __future__ import annotations

import sys

import torch
from _common import MANIFOLD_SCALES, Claims, manifold_vae, parser, pyplot, save, setup, shrink, suptitle

from entropy_elbo.compare import compare, plot_comparison
from entropy_elbo.elbo import estimate
from entropy_elbo.plot import centred_average

TOLERANCE = 0.005  # the paper's 0.5%
RATIO = 10  # entropy-ELBO variance at least 10x lower
MC_SAMPLES = 100
DIFFERS = ("settings differ from the paper's: 1,000 epochs (full) with our schedule (variance scalars at 10x lr, "
           "cosine decay over the last 30%)\nagainst the paper's 200 epochs at a constant lr; the same points, "
           "batch 512 and lr 1e-3; one run")


def gap(model, x_train, seed: int = 0) -> dict:  # noqa: ANN001
    """Fig. 5's numbers for a trained model: MC ELBO (MC_SAMPLES samples per point), entropy ELBO, r."""
    est = estimate(model, [x_train], samples=MC_SAMPLES, generator=torch.Generator().manual_seed(seed))
    print(f"trained VAE-1 on {len(x_train)} points: MC ELBO ({MC_SAMPLES} samples) {est.mc_elbo:.3f} +- "
          f"{est.mc_stderr:.3f}, entropy ELBO (eq. 14) {est.entropy_elbo:.3f}; r = {est.stationarity['r']:.3f} "
          "(1 at a stationary point, eq. 76)")
    return {"mc_elbo": est.mc_elbo, "entropy_elbo": est.entropy_elbo, "relative_difference": est.relative_difference,
            "r": est.stationarity["r"]}


def variance(model, x_train, seed: int = 0) -> tuple[dict, object]:  # noqa: ANN001
    """Fig. 6: the variance of the sampled ELBO (S = 1, MC_SAMPLES) over that of the entropy ELBO, over 10 random
    subsets of each size; the ratios by 'estimator@n', and the comparison (for its plot)."""
    sizes = [10, 100, len(x_train) // 2]  # at n = N every subset is the whole data: no spread to compare
    cmp = compare(model, x_train, sizes=sizes, repeats=10, mc_samples=(1, MC_SAMPLES), seed=seed)
    ratios = {f"{r.estimator}@{r.n}": r.variance_ratio for r in cmp.runs if r.variance_ratio is not None}
    for key, v in ratios.items():
        print(f"  n={key.split('@')[1]:>5}: std of {key.split('@')[0]} / std of entropy ELBO over 10 subsets -> "
              f"variance ratio {v:,.0f}")
    return ratios, cmp


def run(args) -> Claims:  # noqa: ANN001
    s = setup(args, MANIFOLD_SCALES)
    claims = Claims("Fig. 5/6")
    model, rows, x_train, _ = manifold_vae(s, seed=args.seed, k=args.k)
    g = gap(model, x_train, args.seed)
    rel = g["relative_difference"]
    claims.values.update(g)
    paper = "relative difference ELBO vs three entropies < 0.5% near convergence (Fig. 5)"
    measured = f"{100 * rel:+.3f}% after {s['epochs'] * -(-len(x_train) // s['batch_size'])} Adam steps"
    if s["scale"] == "full":
        claims.check(paper, measured, abs(rel) < TOLERANCE)
    else:
        print(f"[INFO] {claims.figure} | paper: {paper}\n       measured: {measured} (not checked: at this scale "
              "training stops before sigma^2 converges; run the full mode)")
    ratios, cmp = variance(model, x_train, args.seed)
    claims.values["variance_ratio"] = ratios
    worst = min(ratios.values())
    claims.check("the entropy ELBO's variance is far lower than the sampled ELBO's (>= 10x; Fig. 6)",
                 f"variance ratio between {worst:,.0f}x and {max(ratios.values()):,.0f}x over n = "
                 f"{sorted({r.n for r in cmp.runs})} and S = 1, {MC_SAMPLES} samples", worst >= RATIO)
    shrink(plot_comparison(cmp, args.out / "fig6_manifold_estimators.png"))

    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), constrained_layout=True)
    epochs = [r["epoch"] for r in rows]
    top.plot(epochs, [r["mc_elbo"] for r in rows], lw=1, label="ELBO (sampled, training batches)")
    top.plot(epochs, [r["heldout_elbo"] for r in rows], lw=1, label="ELBO (held-out)")
    top.plot(epochs, [r["entropy_elbo"] for r in rows], "--", label="sum of three entropies (eq. 14)")
    top.set(xlabel="epoch", ylabel="nats per data point", title="VAE-1 on the manifold data (D=100, H=20)",
            ylim=(min(0.0, g["mc_elbo"] - 50), max(r["entropy_elbo"] for r in rows) + 20))
    top.legend(fontsize=8)
    gaps = [100 * r["relative_gap"] for r in rows]
    bottom.plot(epochs, gaps, lw=0.6, alpha=0.5, label="relative difference (one run)")
    bottom.plot(epochs, centred_average(gaps, 19), color="navy",
                label="moving average over 19 epochs, centred (no lag)")
    bottom.axhline(0, color="grey", lw=0.8)
    bottom.set(xlabel="epoch", ylabel="(ELBO - entropies) / |ELBO|  [%]", ylim=(-10, 10))
    bottom.legend(fontsize=8)
    suptitle(fig, DIFFERS, s, f"{len(x_train):,} points, {s['epochs']} epochs of batch {s['batch_size']}, "
             f"seed {args.seed}, k = {args.k}")
    save(fig, args.out, "fig5_manifold.png")
    return claims


def main(argv: list[str] | None = None) -> int:
    return run(parser(__doc__.splitlines()[0]).parse_args(argv)).exit_code


if __name__ == "__main__":
    sys.exit(main())
