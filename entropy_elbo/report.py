"""Terminal output: the only module that imports rich. Data goes to stdout, progress and notes to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from entropy_elbo.compare import Comparison
from entropy_elbo.estimate import Estimate

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _short(values: object) -> str:
    if isinstance(values, list):
        shown = ", ".join(f"{v:.4g}" for v in values[:8])
        return f"[{shown}{', ...' if len(values) > 8 else ''}]"
    return f"{values:.6g}" if isinstance(values, float) else str(values)


def estimate_table(est: Estimate, source: str) -> Table:
    """The estimate as a table naming every figure, how it was obtained, and its unit."""
    t = Table(title=f"ELBO of {source}  (N={est.n}, D={est.d}, H={est.h}, decoder variance: {est.decoder_variance})")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("how it was obtained")
    u = "nats/point"
    t.add_row("entropy ELBO", f"{_fmt(est.entropy_elbo)} {u}", "encoder - prior - decoder entropy (Thm. 2, eq. 14)")
    t.add_row("  encoder entropy", f"{_fmt(est.entropies['encoder'])} {u}", "mean_n sum_h 0.5 log(2 pi e tau^2)")
    t.add_row("  prior entropy", f"{_fmt(est.entropies['prior'])} {u}", "0.5 log det(2 pi e A)")
    network = est.decoder_variance == "network"
    how = "sampled z, variance net only (eq. 22)" if network else "sum_d 0.5 log(2 pi e sigma^2)"
    t.add_row("  decoder entropy", f"{_fmt(est.entropies['decoder'])} {u}", how)
    if est.mc_elbo is not None:
        t.add_row("Monte Carlo ELBO", f"{_fmt(est.mc_elbo)} {u}", f"eq. 2, {est.mc_samples} samples per point")
        t.add_row("  standard error", f"{_fmt(est.mc_stderr)} {u}", "over data points and samples")
        if est.mc_sampling_stderr is not None:
            t.add_row("  sampling error", f"{_fmt(est.mc_sampling_stderr)} {u}", "sampling noise alone (fixed data)")
    if est.relative_difference is not None:
        t.add_row("relative difference", f"{100 * est.relative_difference:.3f} %", "(MC - entropy) / |MC|")
    st = est.stationarity
    if "r" in st:
        t.add_row("r", _fmt(st["r"], 5), "mean E||x - mu||^2 / (D sigma^2); 1 at a stationary point")
        t.add_row("predicted gap", f"{_fmt(st['gap'], 5)} {u}", "ELBO - entropy ELBO = D(1-r)/2 + sum_h (1-a_h)/2")
    t.add_row("a_h", _short(st["a"]), "mean_n (nu^2 + tau^2) / A_h; 1 at a stationary point")
    if "sigma2" in st:
        t.add_row("sigma^2 (learned)", _short(st["sigma2"]), "decoder variance in the checkpoint")
    if "sigma2_optimal" in st:
        t.add_row("sigma^2 (optimal)", _short(st["sigma2_optimal"]), "sigma^2 * r, the best variance given the rest")
    if est.ppca_loglik is not None:
        t.add_row("pPCA log-likelihood", f"{_fmt(est.ppca_loglik)} {u}", "exact, C = W W^T + sigma^2 I (eq. 26)")
    if est.iwae is not None:
        iwae_rows(t, est)
    return t


def print_estimate(est: Estimate, source: str, as_json: bool) -> None:
    """Print the estimate as a table, or as one JSON object on stdout."""
    if as_json:
        print_json(est.to_dict())
        return
    out.print(estimate_table(est, source))
    if est.note:
        err.print(f"note: {est.note}")


def print_json(data: object) -> None:
    """One JSON object on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, allow_nan=False, default=float) + "\n")


def message(text: str) -> None:
    """A message for the user on stderr."""
    err.print(text, highlight=False)


@contextmanager
def epoch_progress(total: int, quiet: bool = False) -> Iterator[object]:
    """A progress bar over epochs showing the sampled ELBO, the entropy ELBO and their relative gap."""
    if quiet:
        yield lambda row: None
        return
    columns = (TextColumn("epoch"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("train", total=total, info="")

        def update(row: dict[str, object]) -> None:
            gap = row.get("relative_gap")
            info = f"ELBO {row['elbo']:.4f}  entropy ELBO {_fmt(row.get('entropy_elbo'))} nats/point"
            if gap is not None:
                info += f"  gap {100 * gap:+.2f}%"
            progress.update(task, completed=row["epoch"], info=info)

        yield update


def iwae_rows(t: Table, est: Estimate) -> None:
    """The importance-weighted bound and its standard error, as rows of the estimate table."""
    u = "nats/point"
    t.add_row("IWAE bound", f"{_fmt(est.iwae)} {u}",
              f"E log mean_k p(x,z_k)/q(z_k|x), K={est.iwae_samples}; ELBO <= IWAE <= log p(x)")
    t.add_row("  standard error", f"{_fmt(est.iwae_stderr)} {u}", "over data points")


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
            t.add_row(str(n), short_label(r.estimator), _fmt(r.mean), f"{r.std:.3g}", f"{1000 * r.seconds:.3g}",
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
    out.print(comparison_table(cmp))
    if cmp.note:
        err.print(f"note: {cmp.note}")


def short_label(name: str) -> str:
    """An estimator's key as a table label: entropy, MC S=<samples>, dec. entropy."""
    return {"entropy": "entropy", "decoder_entropy": "dec. entropy"}.get(name, f"MC S={name[2:]}")
