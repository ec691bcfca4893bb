"""`entropy-elbo compare`: each estimator's mean, spread and time per subset size."""

from __future__ import annotations

from rich import box
from rich.table import Table

from entropy_elbo.compare import Comparison
from entropy_elbo.report.console import message, print_json
from entropy_elbo.report.figures import fmt
from entropy_elbo.report.layout import show


def comparison_table(cmp: Comparison) -> Table:
    """Each estimator at each subset size: mean and spread over the repeats, time, and ratios to the entropy ELBO."""
    t = Table(title=f"ELBO estimators in nats/point, mean and std over {cmp.repeats} random subsets of n points "
                    f"of {cmp.source} (N={cmp.n_data}, D={cmp.d}, H={cmp.h}, decoder variance: "
                    f"{cmp.decoder_variance}, seed {cmp.seed})")
    t.box, t.pad_edge = box.SIMPLE_HEAD, False
    t.add_column("n", justify="right", no_wrap=True)
    t.add_column("estimator", no_wrap=True)
    for name in ("mean", "std", "ms/repeat", "var ratio", "speed ratio"):
        t.add_column(name, justify="right", no_wrap=True)
    for n in cmp.sizes:
        for r in (r for r in cmp.runs if r.n == n):
            t.add_row(str(n), short_label(r.estimator), fmt(r.mean), f"{r.std:.3g}", f"{1000 * r.seconds:.3g}",
                      "" if r.variance_ratio is None else f"{r.variance_ratio:.3g}",
                      "" if r.speed_ratio is None else f"{r.speed_ratio:.3g}")
        if n != cmp.sizes[-1]:
            t.add_section()
    t.caption = ("entropy: entropy ELBO (Thm. 2, eq. 14); MC S: Monte Carlo ELBO (eq. 2) with S samples per point. "
                 "var ratio = (std_MC / std_entropy)^2; speed ratio = time MC needs to reach the entropy ELBO's "
                 "std, time_MC * (std_MC / std_entropy)^2, over the entropy ELBO's time (wall time, this machine). "
                 "Empty: the entropy ELBO has no spread there (linear VAE, or n = N).")
    return t


def print_comparison(cmp: Comparison, as_json: bool) -> None:
    """Print the comparison as a table, or as one JSON object on stdout."""
    if as_json:
        print_json(cmp.to_dict())
        return
    show(comparison_table(cmp))
    if cmp.note:
        message(f"note: {cmp.note}")


def short_label(name: str) -> str:
    """An estimator's key as a table label: entropy, MC S=<samples>, dec. entropy."""
    return {"entropy": "entropy", "decoder_entropy": "dec. entropy"}.get(name, f"MC S={name[2:]}")
