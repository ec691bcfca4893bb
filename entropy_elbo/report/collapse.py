"""`entropy-elbo collapse`: the per-latent table, the counts, the thresholds and a text bar chart."""

from __future__ import annotations

from rich import box
from rich.markup import escape
from rich.table import Table

from entropy_elbo.latents import CollapseResult
from entropy_elbo.report.console import err, out, print_json
from entropy_elbo.report.layout import show

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
    """A text bar chart of the mean encoder entropy per latent, each bar drawn from 0 (a negative entropy to the
    left of it, not an empty bar); '|' marks the collapse threshold."""
    values = result.mean_entropy
    lo = min(0.0, *values, *result.entropy_threshold)
    hi = max(*result.prior_entropy, *values, *result.entropy_threshold)
    scale = (width - 1) / (hi - lo) if hi > lo else 0.0
    lines = [f"mean encoder entropy per latent, axis {lo:.2f} .. {hi:.2f} nats; '|' = threshold, "
             f"prior entropy {max(result.prior_entropy):.4f}"]
    for k in result.order:
        end, zero = int(round((values[k] - lo) * scale)), int(round(-lo * scale))
        mark = int(round((result.entropy_threshold[k] - lo) * scale))
        cells = ["#" if min(zero, end) <= i < max(zero, end) else " " for i in range(width)]
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
    for warning in result.warnings:
        err().print(f"[bold red]warning:[/bold red] {escape(warning)}", highlight=False)
    names = {"entropy": "entropy criterion (eq. 24)", "active_units": "active units (Burda et al. 2016)",
             "lucas": "(epsilon, delta)-collapse (Lucas et al. 2019)"}
    for metric, count in result.counts.items():  # the summary first
        out().print(f"{names[metric]}: {count} of {result.h} latents collapsed, {result.h - count} active",
                  highlight=False)
    if result.disagreements:
        which = ", ".join(f"z{k}" for k in result.disagreements)
        out().print(f"the metrics disagree on {len(result.disagreements)} latents: {which}", highlight=False)
    else:
        out().print("the three metrics agree on every latent", highlight=False)
    if result.latent_shape:  # spatial latents: one line per channel instead of thousands of rows
        for row in result.channel_rows():
            pos = row["collapsed_positions"]
            out().print(f"channel {row['channel']}: mean encoder entropy {row['mean_encoder_entropy']:.4f} nats per "
                      f"latent over {row['positions']} positions (min {row['min_encoder_entropy']:.4f}, max "
                      f"{row['max_encoder_entropy']:.4f}): {'collapsed' if row['collapsed'] else 'active'}; "
                      f"collapsed positions: entropy {pos['entropy']}, inactive units {pos['active_units']}, "
                      f"Lucas {pos['lucas']}", highlight=False)
    else:
        show(collapse_table(result, source, top))
    for line in [] if result.latent_shape else collapse_bars(result)[: (top + 1) if top else None]:
        out().print(line, highlight=False)
    if top and top < result.h:
        out().print(f"... {result.h - top} more latents of lower H[q] not shown (--top {top}; --top 0 shows all)",
                  highlight=False)
    err().print(escape(f"thresholds: {collapse_settings_line(result)}"), highlight=False)
