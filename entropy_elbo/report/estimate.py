"""The estimate of `entropy-elbo estimate`: its table, its notes and the IWAE rows."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from entropy_elbo.elbo import Estimate
from entropy_elbo.entropies import LOG_2PI_E
from entropy_elbo.report.console import err, message, print_json
from entropy_elbo.report.figures import fmt, short
from entropy_elbo.report.layout import show


def estimate_table(est: Estimate, source: str) -> Table:
    """The estimate as a table naming every figure, how it was obtained, and its unit."""
    fixed = est.decoder_variance == "fixed"
    kind = "fixed (given, not learned)" if fixed else est.decoder_variance
    over = f"N={est.n}" if est.n else "no data: from the parameters"
    t = Table(title=escape(f"ELBO of {source}  ({over}, D={est.d}, H={est.h}, decoder variance: {kind})"))
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("how it was obtained")
    u = "nats/point"
    if fixed:  # Thm. 1 needs a learned sigma^2: no entropy ELBO and no gap to it, only the entropies themselves
        t.add_row("entropy ELBO", "does not apply", "sigma^2 was not learned, so Thm. 2 does not hold")
    else:
        t.add_row("entropy ELBO", f"{fmt(est.entropy_elbo)} {u}", "encoder - prior - decoder entropy (Thm. 2, eq. 14)")
        if est.entropy_elbo_sampling_stderr is not None:
            t.add_row("  sampling error", f"{fmt(est.entropy_elbo_sampling_stderr)} {u}",
                      f"of the sampled decoder entropy, {est.mc_samples} samples per point (eq. 22)")
    t.add_row("  encoder entropy", f"{fmt(est.entropies['encoder'])} {u}", "mean_n sum_h 0.5 log(2 pi e tau^2)")
    t.add_row("  prior entropy", f"{fmt(est.entropies['prior'])} {u}", prior_formula(est))
    network = est.decoder_variance == "network"
    how = "sampled z, variance net only (eq. 22)" if network else "sum_d 0.5 log(2 pi e sigma^2)"
    t.add_row("  decoder entropy", f"{fmt(est.entropies['decoder'])} {u}", how)
    if est.mc_elbo is not None:
        t.add_row("Monte Carlo ELBO", f"{fmt(est.mc_elbo)} {u}", f"eq. 2, {est.mc_samples} samples per point")
        t.add_row("  standard error", f"{fmt(est.mc_stderr)} {u}", "over data points and samples")
        if est.mc_sampling_stderr is not None:
            t.add_row("  sampling error", f"{fmt(est.mc_sampling_stderr)} {u}", "sampling noise alone (fixed data)")
    if est.relative_difference is not None:
        t.add_row("relative difference", f"{100 * est.relative_difference:.3f} %", "(MC - entropy) / |MC|")
    st = est.stationarity
    if "r" in st:
        t.add_row("r", fmt(st["r"], 5), "mean E||x - mu||^2 / (D sigma^2); 1 where sigma^2 is optimal")
    if "gap" in st:
        t.add_row("predicted gap", f"{fmt(st['gap'], 5)} {u}", "ELBO - entropy ELBO = D(1-r)/2 + sum_h (1-a_h)/2")
    if "a" in st:
        t.add_row("a_h", short(st["a"]), "mean_n (nu^2 + tau^2) / A_h; 1 at a stationary point")
    if "sigma2" in st:
        if fixed:
            t.add_row("sigma^2 (given)", short(st["sigma2"]), "the fixed decoder variance it was evaluated at")
        else:
            t.add_row("sigma^2 (learned)", short(st["sigma2"]), "decoder variance in the checkpoint")
    if "sigma2_optimal" in st:
        t.add_row("sigma^2 (optimal)", short(st["sigma2_optimal"]), "sigma^2 * r, the best variance given the rest")
    if est.ppca_loglik is not None:
        t.add_row("pPCA log-likelihood", f"{fmt(est.ppca_loglik)} {u}", "exact, C = W W^T + sigma^2 I (eq. 26)")
    if est.iwae is not None:
        iwae_rows(t, est)
    return t


def print_estimate(est: Estimate, source: str, as_json: bool) -> None:
    """Print the estimate as a table, or as one JSON object on stdout."""
    if as_json:
        print_json(est.to_dict())
        return
    for warning in est.warnings:
        err().print(f"[bold red]warning:[/bold red] {escape(warning)}", highlight=False)
    show(estimate_table(est, source))
    for note in (est.note, iwae_note(est)):
        if note:
            message(f"note: {note}")


def iwae_rows(t: Table, est: Estimate) -> None:
    """The importance-weighted bound and its standard error, as rows of the estimate table."""
    u = "nats/point"
    t.add_row("IWAE bound", f"{fmt(est.iwae)} {u}",
              f"E log mean_k p(x,z_k)/q(z_k|x), K={est.iwae_samples}; ELBO <= IWAE <= log p(x)")
    t.add_row("  standard error", f"{fmt(est.iwae_stderr)} {u}", "over data points")
    if est.mc_elbo is not None:  # --samples 0: no Monte Carlo ELBO to compare with
        t.add_row("IWAE - MC ELBO", f"{fmt(est.iwae - est.mc_elbo)} {u}", "should be >= 0 (ELBO <= IWAE)")


def iwae_note(est: Estimate) -> str | None:
    """A note when the IWAE bound came out below the Monte Carlo ELBO: sampling noise, not a broken bound."""
    if est.iwae is None or est.mc_elbo is None or est.iwae >= est.mc_elbo:
        return None
    se = ((est.mc_sampling_stderr or 0.0) ** 2 + (est.iwae_stderr or 0.0) ** 2) ** 0.5
    within = "within" if est.mc_elbo - est.iwae <= 2 * se else "beyond"
    return (f"the IWAE bound ({est.iwae:.4f}) is below the Monte Carlo ELBO ({est.mc_elbo:.4f} nats/point) by "
            f"{est.mc_elbo - est.iwae:.4f}, {within} two standard errors (MC sampling error "
            f"{fmt(est.mc_sampling_stderr)}, IWAE standard error {fmt(est.iwae_stderr)}): both are estimates; "
            "raise --samples and --iwae to separate them")


def prior_formula(est: Estimate) -> str:
    """How the prior entropy was obtained: 0.5 H log(2 pi e) for N(0, I), else 0.5 log det(2 pi e A)."""
    standard = est.h is not None and abs(est.entropies["prior"] - 0.5 * est.h * LOG_2PI_E) <= 1e-9 * max(1, est.h)
    return "0.5 H log(2 pi e), prior N(0, I)" if standard else "0.5 log det(2 pi e A)"
