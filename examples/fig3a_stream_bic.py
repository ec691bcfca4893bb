"""Fig. 3(a): three linear VAEs (H = 2, 4, 6) learn from a stream whose intrinsic dimension changes 6 -> 2 -> 4.
The BIC from the three entropies (Cor. 1, eq. 20: variance parameters only) is smooth and picks the right H in
every phase; the BIC from the online sampled ELBO is very noisy (Appendix A).

    python examples/fig3a_stream_bic.py [--quick] [--out DIR]
"""

from __future__ import annotations

import sys

import numpy as np
from _common import Claims, parser, pyplot, save, setup

from entropy_elbo.data import stream, stream_phases
from entropy_elbo.select import phase_segments, select_stream, summarize

# Paper (App. A): 100,000 points per phase, batch 10, lr 0.002, 100 samples. The reduced scales shorten the
# phases and raise the learning rate so that each phase still ends near a stationary point.
SCALES = {
    "full": {"per_phase": 100_000, "lr": 0.002, "samples": 100, "tail": 1000},
    "quick": {"per_phase": 20_000, "lr": 0.01, "samples": 100, "tail": 500},
}
LATENTS = (2, 4, 6)


def measure(s: dict, seed: int) -> dict:
    """Three linear VAEs on the stream drawn with `seed` (and trained with it): the BIC curves and, per phase, the
    H each BIC picks over the phase's tail and how much noisier the sampled BIC is (median over H)."""
    x = stream(s["per_phase"], seed=seed)
    phases = stream_phases(s["per_phase"])
    sel = select_stream([x], LATENTS, batch_size=10, lr=s["lr"], samples=s["samples"], seed=seed)
    segments = phase_segments([p.stop - p.start for p in phases], [p.dim for p in phases])
    summaries = summarize(sel, segments, s["tail"])
    truth = [p.dim for p in phases]
    picks = [m.entropy.selected for m in summaries]
    return {"sel": sel, "phases": phases, "summaries": summaries, "true_dims": truth, "entropy_picks": picks,
            "sampled_picks": [m.sampled.selected for m in summaries],
            "entropy_agreement": [m.entropy.agreement for m in summaries],
            "std_ratio": [float(np.median(m.sampled.std / m.entropy.std)) for m in summaries],
            "phases_right": sum(p == t for p, t in zip(picks, truth, strict=True))}


def run(args) -> Claims:  # noqa: ANN001
    s = setup(args, SCALES)
    claims = Claims("Fig. 3(a)")
    res = measure(s, args.seed)
    sel, phases, summaries, truth = res["sel"], res["phases"], res["summaries"], res["true_dims"]
    picks_entropy, picks_sampled = res["entropy_picks"], res["sampled_picks"]
    agreement, ratios = res["entropy_agreement"], res["std_ratio"]
    claims.values.update(true_dims=truth, entropy_picks=picks_entropy, sampled_picks=picks_sampled,
                         entropy_agreement=agreement, std_ratio=ratios)
    for m, ratio in zip(summaries, ratios, strict=True):
        print(f"{m.segment.name} (true H={m.segment.true_dim}), last {m.tail} batches of 10 rows: entropy BIC picks "
              f"H={m.entropy.selected} (in {100 * m.entropy.agreement:.0f}% of batches alone), sampled BIC picks "
              f"H={m.sampled.selected} (in {100 * m.sampled.agreement:.0f}%); std sampled / std entropy "
              f"{ratio:.1f} (median over H)")
    claims.check("the entropy BIC picks the right H in each phase",
                 f"picks {picks_entropy} for true {truth}; single batches agree {[f'{a:.0%}' for a in agreement]}",
                 picks_entropy == truth)
    claims.check("the sampled-ELBO BIC is very noisy, the entropy BIC smooth",
                 f"std of the sampled BIC / std of the entropy BIC per phase: {[f'{r:.1f}' for r in ratios]} "
                 "(checked: > 5)", min(ratios) > 5)

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5), constrained_layout=True)
    rows = sel.start + sel.rows
    every = max(1, len(rows) // 3000)  # a few thousand points per curve keep the PNG small
    for k, h in enumerate(LATENTS):
        line = ax.plot(rows[::every], sel.bic_entropy[::every, k], lw=1.5, label=f"entropy BIC, H={h}")[0]
        ax.plot(rows[::every], sel.bic_sampled[::every, k], lw=0.5, alpha=0.3, color=line.get_color())
    for p in phases[1:]:
        ax.axvline(p.start, color="grey", ls=":")
    ax.set(xlabel="rows seen", ylabel="BIC per batch of 10 rows (lower is better)",
           title=f"streaming model selection; true H per phase {truth} (faint: sampled-ELBO BIC)")
    lo = np.percentile(sel.bic_entropy[len(rows) // 10:], 1)
    ax.set_ylim(lo - 50, np.percentile(sel.bic_entropy[len(rows) // 10:], 99) + 150)
    ax.legend(fontsize=8)
    save(fig, args.out, "fig3a_stream_bic.png")
    return claims


def main(argv: list[str] | None = None) -> int:
    return run(parser(__doc__.splitlines()[0]).parse_args(argv)).exit_code


if __name__ == "__main__":
    sys.exit(main())
