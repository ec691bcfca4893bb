"""Terminal output: the only module that imports rich. Data goes to stdout, progress and notes to stderr."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from entropy_elbo.compare import Comparison
from entropy_elbo.elbo import Estimate
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.latents import CollapseResult
from entropy_elbo.progress import ProgressLine
from entropy_elbo.progress import fixed as _fmt


class Stdout:
    """sys.stdout (looked up at each write) that turns a failed write (a full disk, a closed pipe) into one line."""

    def write(self, text: str) -> int:
        return self._guard(lambda: sys.stdout.write(text) + (sys.stdout.flush() or 0))

    def flush(self) -> None:
        self._guard(sys.stdout.flush)

    def isatty(self) -> bool:
        return sys.stdout.isatty()

    @property
    def encoding(self) -> str:
        return getattr(sys.stdout, "encoding", None) or "utf-8"

    @staticmethod
    def _guard(write):  # noqa: ANN001, ANN205
        try:
            return write()
        except OSError as error:
            with contextlib.suppress(OSError, ValueError, AttributeError):  # what Python still holds for stdout
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # must not fail again at exit
            raise EntropyElboError(f"cannot write the results to standard output ({error.strerror or error}); "
                                   "free space where it goes, or redirect it elsewhere") from None


stdout = Stdout()
out = Console(file=stdout, soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _short(values: object) -> str:
    if isinstance(values, list):
        shown = ", ".join(f"{v:.4g}" for v in values[:8])
        return f"[{shown}{', ...' if len(values) > 8 else ''}]"
    return f"{values:.6g}" if isinstance(values, float) else str(values)


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
        t.add_row("entropy ELBO", f"{_fmt(est.entropy_elbo)} {u}", "encoder - prior - decoder entropy (Thm. 2, eq. 14)")
        if est.entropy_elbo_sampling_stderr is not None:
            t.add_row("  sampling error", f"{_fmt(est.entropy_elbo_sampling_stderr)} {u}",
                      f"of the sampled decoder entropy, {est.mc_samples} samples per point (eq. 22)")
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
        t.add_row("r", _fmt(st["r"], 5), "mean E||x - mu||^2 / (D sigma^2); 1 where sigma^2 is optimal")
    if "gap" in st:
        t.add_row("predicted gap", f"{_fmt(st['gap'], 5)} {u}", "ELBO - entropy ELBO = D(1-r)/2 + sum_h (1-a_h)/2")
    if "a" in st:
        t.add_row("a_h", _short(st["a"]), "mean_n (nu^2 + tau^2) / A_h; 1 at a stationary point")
    if "sigma2" in st:
        if fixed:
            t.add_row("sigma^2 (given)", _short(st["sigma2"]), "the fixed decoder variance it was evaluated at")
        else:
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
    for warning in est.warnings:
        err.print(f"[bold red]warning:[/bold red] {escape(warning)}", highlight=False)
    out.print(estimate_table(est, source))
    for note in (est.note, iwae_note(est)):
        if note:
            message(f"note: {note}")


def print_json(data: object) -> None:
    """One JSON object on stdout, nothing else."""
    stdout.write(json.dumps(data, allow_nan=False, default=float) + "\n")


def message(text: str, console: Console | None = None) -> None:
    """Free text for the user, on stderr (or `console`), printed as is: rich markup in it is escaped."""
    (console or err).print(escape(text), highlight=False)


@contextmanager
def work_progress(total: float, unit: str, quiet: bool = False) -> Iterator[object]:
    """Progress with an ETA over `total` units of long work (shown only after 2 s): yields tick(units done now)."""
    line = ProgressLine(total, unit, quiet=quiet, delay=2.0, interval=30.0)
    if not line.terminal:  # a log gets a line only from work that lasts the interval (30 s)
        line.delay = line.interval
    done = 0.0

    def tick(units: float) -> None:
        nonlocal done
        done += units
        line.update(done)

    try:
        yield tick
    finally:
        line.close()


def counted(batches: Iterable, tick: object) -> Iterator:
    """The batches, telling `tick` each one's rows as it passes."""
    for batch in batches:
        yield batch
        tick(len(batch))


def _variance_text(value: object) -> str:
    return "n/a" if value is None else _short(value)


def wild_summary(intro: object) -> str:
    """One stderr line saying how a checkpoint from the wild was read."""
    dec, enc = intro.decoder, intro.encoder
    where = f" ({dec.name}, {dec.param})" if dec.name else " (no parameter holds it)"
    return (f"read {intro.source} as {intro.model_kind} ({intro.fmt}): H={intro.h}, D={intro.d}; decoder variance "
            f"{dec.kind}{where}; encoder variance {enc.name} ({enc.param}); "
            "see `entropy-elbo inspect` for the evidence")


FLAG_WIDTH = len("--decoder-var-param")  # the longest override flag: that column never narrows below it


def inspection_table(intro: object) -> Table:
    """What was found in a checkpoint, how sure, and which flag overrides each guess."""
    t = Table(title=f"{intro.source}: {intro.model_kind} ({intro.fmt})")
    t.add_column("item", overflow="fold")
    t.add_column("found", overflow="fold")
    t.add_column("evidence", overflow="fold")
    t.add_column("override", overflow="fold", min_width=FLAG_WIDTH)  # a flag is never cut at 80 columns
    t.add_row("latents H", str(intro.h), "output size of the encoder's mean", "--model")
    t.add_row("observed dims D", str(intro.d), "input size of the encoder", "--model")
    dec, enc = intro.decoder, intro.encoder
    t.add_row("decoder variance", f"{dec.kind}: {dec.name or '-'} [{dec.param or '-'}]", dec.evidence, dec.override)
    t.add_row("  sigma^2", _variance_text(dec.value), "variance implied by the stored value", "")
    t.add_row("encoder variance", f"{enc.kind}: {enc.name} [{enc.param}]", enc.evidence, enc.override)
    if enc.value is not None:
        t.add_row("  tau^2", _variance_text(enc.value), "shared by all data points", "")
    if intro.prior is not None:
        t.add_row("prior variance", f"learned: {intro.prior.name}", intro.prior.evidence, intro.prior.override)
    for note in intro.notes:
        t.add_row("note", "", note, "")
    for a in intro.assumptions:
        t.add_row("assumed", a.what, a.evidence, a.override)
    return t


def print_reading(intro: object) -> None:
    """How a checkpoint from the wild was read (one line), then each assumption made, one stderr line each."""
    message(wild_summary(intro))
    for a in getattr(intro, "assumptions", []):
        err.print(escape(f"assumed: {a.what} ({a.evidence}; override: {a.override})"), highlight=False)


def print_inspection(intro: object, as_json: bool) -> None:
    """Print an `Introspection` as a table, or as one JSON object on stdout."""
    if as_json:
        print_json(intro.to_dict())
        return
    out.print(inspection_table(intro))
    if intro.decoder.kind == "fixed":
        message("note: a fixed decoder variance: no entropy ELBO (Thm. 1 needs a learned sigma^2); estimate gives "
                "the Monte Carlo ELBO at --decoder-variance VALUE, or at the best sigma^2 given the rest with "
                "--decoder-variance optimal")


# ---------------------------------------------------------------------------------------------- collapse

_VERDICT = {True: "[red]yes[/red]", False: "[green]no[/green]"}


def collapse_settings_line(result: CollapseResult) -> str:
    """The four thresholds in use, each named after its source."""
    s = result.settings
    rule = (f"mean entropy > H[p(z_h)] - {s['delta']:g}" if s["delta"] is not None
            else f"mean entropy > {s['threshold']:g} nat")
    return (f"entropy (eq. 24): collapsed if {rule} (paper: 1.0 nat); active units (Burda et al.): collapsed if "
            f"Var_x[nu_h] <= {s['active_threshold']:g} (default 0.01); Lucas et al. (eq. 71): collapsed if "
            f"P_x[KL_h < {s['lucas_epsilon']:g}] >= 1 - {s['lucas_delta']:g} (defaults epsilon 0.01, delta 0.01)")


def collapse_table(result: CollapseResult, source: str, top: int | None = None) -> Table:
    """One row per latent, highest mean encoder entropy first (the first `top` only), with each verdict."""
    shown = result.latent_rows()[:top] if top else result.latent_rows()
    title = f"Posterior collapse per latent of {source} (N={result.n}, H={result.h})"
    if len(shown) < result.h:
        title += f": the {len(shown)} of highest H[q]"
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, title=escape(title),
              caption=escape("H[q]: mean_n H[q(z_h|x_n)]; H[p]-H[q]: distance to the prior entropy; KL: mean_n "
                      "KL(q(z_h|x_n)||p(z_h)); all in nats. Var[nu]: variance over the data of the encoder mean. "
                      "P[KL<eps]: fraction of data points with KL below epsilon. Last three columns: is the "
                      "latent collapsed by the entropy criterion (eq. 24), an inactive unit (Var[nu] <= "
                      f"{result.settings['active_threshold']:g}, Burda et al.), collapsed by Lucas et al.?"))
    eps = result.settings["lucas_epsilon"]
    verdicts = ("eq.24", "inactive", "Lucas")
    for name in ("z", "H[q]", "H[p]-H[q]", "KL", "Var[nu]", f"P[KL<{eps:g}]", *verdicts):
        t.add_column(escape(name), justify="left" if name in verdicts else "right", no_wrap=True)
    for row in shown:
        c = row["collapsed"]
        t.add_row(f"z{row['latent']}", f"{row['mean_encoder_entropy']:.3f}", f"{row['distance_to_prior_entropy']:.3f}",
                  f"{row['mean_kl']:.3f}", f"{row['encoder_mean_variance']:.3g}",
                  f"{row['lucas_fraction_kl_below_epsilon']:.3f}", _VERDICT[c["entropy"]],
                  _VERDICT[c["active_units"]], _VERDICT[c["lucas"]])
    return t


def collapse_bars(result: CollapseResult, width: int = 40) -> list[str]:
    """A text bar chart of the mean encoder entropy per latent; '|' marks the collapse threshold."""
    values = result.mean_entropy
    lo = min(0.0, *values, *result.entropy_threshold)
    hi = max(*result.prior_entropy, *values, *result.entropy_threshold)
    scale = (width - 1) / (hi - lo) if hi > lo else 0.0
    lines = [f"mean encoder entropy per latent, axis {lo:.2f} .. {hi:.2f} nats; '|' = threshold, "
             f"prior entropy {max(result.prior_entropy):.4f}"]
    for k in result.order:
        filled = int(round((values[k] - lo) * scale))
        mark = int(round((result.entropy_threshold[k] - lo) * scale))
        cells = ["#" if i < filled else " " for i in range(width)]
        cells[min(mark, width - 1)] = "|"
        color = "red" if result.collapsed["entropy"][k] else "blue"
        bar = "".join(cells).replace("#", f"[{color}]#[/{color}]")
        lines.append(f"z{k:<4}{bar} {values[k]:+.3f}")
    return lines


def print_collapse(result: CollapseResult, source: str, as_json: bool, extra: dict | None = None,
                   top: int | None = None) -> None:
    """Print the collapse table, counts, disagreements and bar chart, or one JSON object on stdout."""
    if as_json:
        print_json({"source": source, **result.to_dict(), **(extra or {})})
        return
    names = {"entropy": "entropy criterion (eq. 24)", "active_units": "active units (Burda et al. 2016)",
             "lucas": "(epsilon, delta)-collapse (Lucas et al. 2019)"}
    for metric, count in result.counts.items():  # the summary first
        out.print(f"{names[metric]}: {count} of {result.h} latents collapsed, {result.h - count} active",
                  highlight=False)
    if result.disagreements:
        which = ", ".join(f"z{k}" for k in result.disagreements)
        out.print(f"the metrics disagree on {len(result.disagreements)} latents: {which}", highlight=False)
    else:
        out.print("the three metrics agree on every latent", highlight=False)
    if result.latent_shape:  # spatial latents: one line per channel instead of thousands of rows
        for row in result.channel_rows():
            pos = row["collapsed_positions"]
            out.print(f"channel {row['channel']}: mean encoder entropy {row['mean_encoder_entropy']:.4f} nats per "
                      f"latent over {row['positions']} positions (min {row['min_encoder_entropy']:.4f}, max "
                      f"{row['max_encoder_entropy']:.4f}): {'collapsed' if row['collapsed'] else 'active'}; "
                      f"collapsed positions: entropy {pos['entropy']}, inactive units {pos['active_units']}, "
                      f"Lucas {pos['lucas']}", highlight=False)
    else:
        out.print(collapse_table(result, source, top))
    for line in [] if result.latent_shape else collapse_bars(result)[: (top + 1) if top else None]:
        out.print(line, highlight=False)
    if top and top < result.h:
        out.print(f"... {result.h - top} more latents of lower H[q] not shown (--top {top}; --top 0 shows all)",
                  highlight=False)
    err.print(escape(f"thresholds: {collapse_settings_line(result)}"), highlight=False)


def plot_collapse(result: CollapseResult, path: str, source: str) -> None:
    """A PNG of the mean encoder entropy per latent, highest first, collapsed in red (the paper's Fig. 7, bottom)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise EntropyElboError("--plot needs matplotlib: pip install 'entropy-elbo[plot]'") from None
    order = result.order
    values = [result.mean_entropy[k] for k in order]
    colors = ["tab:red" if result.collapsed["entropy"][k] else "tab:blue" for k in order]
    fig = Figure(figsize=(max(4.0, 0.35 * result.h + 1.5), 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(range(result.h), values, color=colors)
    ax.set_xticks(range(result.h), [str(k) for k in order], fontsize=7)
    cut = result.entropy_threshold
    label = "threshold" if len(set(cut)) > 1 else f"threshold {cut[0]:.3g}"
    ax.step([i - 0.5 for i in range(result.h + 1)], [cut[k] for k in order] + [cut[order[-1]]], where="post", color="k",
            linestyle="--", linewidth=1, label=label)
    ax.axhline(max(result.prior_entropy), color="gray", linestyle=":", linewidth=1,
               label=f"prior entropy {max(result.prior_entropy):.3f}")
    ax.set_xlabel("latent h (by mean encoder entropy)")
    ax.set_ylabel("mean H[q(z_h|x)] (nats)")
    n_active = result.h - result.counts["entropy"]
    ax.set_title(f"{source}: {n_active} of {result.h} latents active (eq. 24)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    try:
        fig.savefig(path, dpi=120)  # the extension picks the format
    except OSError as e:
        raise EntropyElboError(f"--plot {path}: cannot write it ({e.strerror}); choose a writable path") from None
    except ValueError as e:  # matplotlib has no writer for the extension
        raise EntropyElboError(f"--plot {path}: {str(e).splitlines()[0]}; pick one of those extensions") from None


# ---------------------------------------------------------------------------------------------- streaming selection


def selection_tables(summaries: list, latents: tuple[int, ...], source: str, n_text: str) -> list[Table]:
    """Per segment: each BIC's mean and std per candidate H, and the H each BIC selects (Appendix A)."""
    verdict = Table(title=f"Streaming model selection on {source}",
                    caption="pick: the H of lowest mean BIC over the segment's last batches; (%): share of those "
                            f"batches that alone pick it. BIC = -2 n F + (H D + 1) log n, {n_text}.")
    for col in ("segment", "rows", "true H", "entropy BIC pick", "sampled BIC pick", "last batches"):  # fold, never cut
        verdict.add_column(col, justify="left" if col == "segment" else "right", overflow="fold")
    detail = Table(title="BIC, mean +- std over each segment's last batches (lower is better)")
    for col in ("segment", "H", "entropy BIC (eq. 20)", "sampled BIC (eq. 2)", "std ratio"):
        detail.add_column(col, justify="left" if col == "segment" else "right", overflow="fold")
    for s in summaries:
        seg = s.segment

        def pick(m: object, true_dim: int | None = seg.true_dim) -> str:
            mark = "" if true_dim is None else (" right" if m.selected == true_dim else " WRONG")
            return f"H={m.selected} ({100 * m.agreement:.0f}%){mark}"

        true = "-" if seg.true_dim is None else str(seg.true_dim)
        verdict.add_row(seg.name, f"{seg.start}-{seg.stop}", true, pick(s.entropy), pick(s.sampled), str(s.tail))
        for i, h in enumerate(latents):
            ratio = s.sampled.std[i] / s.entropy.std[i] if s.entropy.std[i] > 0 else float("inf")
            detail.add_row(seg.name if i == 0 else "", str(h), f"{s.entropy.mean[i]:.2f} +- {s.entropy.std[i]:.3f}",
                           f"{s.sampled.mean[i]:.2f} +- {s.sampled.std[i]:.3f}", f"{ratio:.1f}x")
    return [verdict, detail]


def print_selection(summaries: list, sel: object, source: str, n_text: str, as_json: bool,
                    extra: dict | None = None) -> None:
    """Print the streaming selection as tables, or as one JSON object on stdout."""
    if as_json:
        print_json({"source": source, "latents": list(sel.latents), "data_dim": sel.d,
                    "rows": int(sel.rows.sum()), "batches": int(len(sel.rows)), "n": n_text,
                    "settings": sel.settings, **(extra or {}),
                    "segments": [s.to_dict(sel.latents) for s in summaries],
                    "units": "BIC = -2 n F + (H D + 1) log n per batch of n rows (F in nats per data point); "
                             "elbo_gap in nats per data point",
                    "other_units": {"agreement": "fraction of the tail batches that pick the same H",
                                    "std_ratio": "ratio of standard deviations", "rows": "data points",
                                    "start_row": "row index", "stop_row": "row index"}})
        return
    for table in selection_tables(summaries, sel.latents, source, n_text):
        out.print(table)
    for s in summaries:
        moving = [str(h) for h, ok in zip(sel.latents, s.near_stationary, strict=True) if not ok]
        if moving:
            message(f"note: {s.segment.name}: for H={', '.join(moving)} the sampled and entropy ELBO still differ "
                    "by more than 0.1 nats/point: those models are not near a stationary point, where eq. 20 "
                    "holds; use a longer stream or a larger --lr")


@contextmanager
def rows_progress(total: int | None, quiet: bool = False) -> Iterator[object]:
    """A progress bar over the rows of a stream."""
    if quiet:
        yield lambda rows: None
        return
    columns = (TextColumn("rows"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("stream", total=total)
        yield lambda rows: progress.update(task, completed=rows)


def plot_bic(sel: object, segments: list, path: str) -> None:
    """Fig. 3(a): entropy BIC (solid) and sampled BIC (transparent) per candidate H over the stream."""
    import numpy as np

    plt = import_pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = sel.start + sel.rows  # rows seen after each batch
    ent, smp = sel.bic_entropy, sel.bic_sampled
    for i, h in enumerate(sel.latents):
        line, = ax.plot(x, smp[:, i], alpha=0.2, linewidth=0.5)
        ax.plot(x, ent[:, i], color=line.get_color(), linewidth=1.5, label=f"H={h}: entropy BIC (eq. 20)")
    ax.plot([], [], color="grey", alpha=0.4, label="sampled BIC (transparent)")
    for seg in segments[:-1]:
        ax.axvline(seg.stop, color="black", linestyle=":", linewidth=0.8)
    lo, hi = np.percentile(smp, [0.5, 99.5]), np.percentile(ent, [0, 100])
    ax.set_ylim(min(lo[0], hi[0]), max(lo[1], hi[1]))
    ax.set_xlabel("data points seen")
    ax.set_ylabel(f"BIC per batch (n = {int(sel.rows[0])}); lower is better")
    ax.set_title("Streaming linear VAEs: BIC from the sampled ELBO and from the entropies (Fig. 3a)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def import_pyplot() -> object:
    """matplotlib.pyplot with a file-only backend, or our error saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from entropy_elbo.errors import EntropyElboError

        raise EntropyElboError("--plot needs matplotlib: pip install 'entropy-elbo[plot]' (or matplotlib)") from None
    return plt


def iwae_rows(t: Table, est: Estimate) -> None:
    """The importance-weighted bound and its standard error, as rows of the estimate table."""
    u = "nats/point"
    t.add_row("IWAE bound", f"{_fmt(est.iwae)} {u}",
              f"E log mean_k p(x,z_k)/q(z_k|x), K={est.iwae_samples}; ELBO <= IWAE <= log p(x)")
    t.add_row("  standard error", f"{_fmt(est.iwae_stderr)} {u}", "over data points")
    t.add_row("IWAE - MC ELBO", f"{_fmt(est.iwae - est.mc_elbo)} {u}", "should be >= 0 (ELBO <= IWAE)")


def iwae_note(est: Estimate) -> str | None:
    """A note when the IWAE bound came out below the Monte Carlo ELBO: sampling noise, not a broken bound."""
    if est.iwae is None or est.mc_elbo is None or est.iwae >= est.mc_elbo:
        return None
    se = ((est.mc_sampling_stderr or 0.0) ** 2 + (est.iwae_stderr or 0.0) ** 2) ** 0.5
    within = "within" if est.mc_elbo - est.iwae <= 2 * se else "beyond"
    return (f"the IWAE bound ({est.iwae:.4f}) is below the Monte Carlo ELBO ({est.mc_elbo:.4f} nats/point) by "
            f"{est.mc_elbo - est.iwae:.4f}, {within} two standard errors (MC sampling error "
            f"{_fmt(est.mc_sampling_stderr)}, IWAE standard error {_fmt(est.iwae_stderr)}): both are estimates; "
            "raise --samples and --iwae to separate them")


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
        message(f"note: {cmp.note}")


def short_label(name: str) -> str:
    """An estimator's key as a table label: entropy, MC S=<samples>, dec. entropy."""
    return {"entropy": "entropy", "decoder_entropy": "dec. entropy"}.get(name, f"MC S={name[2:]}")
