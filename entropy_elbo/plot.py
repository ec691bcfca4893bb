"""Figures written to files: a training run from its log, Fig. 1 (ELBO and three entropies; relative gap) and Fig. 7
(per latent); the per-latent entropies of `collapse` (Fig. 7, bottom); the streaming BIC of `select` (Fig. 3a).

matplotlib is an optional extra (`pip install 'entropy-elbo[plot]'`).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from entropy_elbo.atomic import save_figure
from entropy_elbo.entropies import LOG_2PI_E
from entropy_elbo.errors import EntropyElboError, parse_json
from entropy_elbo.runs import LOG, read_log, run_for_resume

if TYPE_CHECKING:
    from entropy_elbo.latents import CollapseResult

PRIOR_ENTROPY = 0.5 * LOG_2PI_E  # H[N(0, 1)] ~ 1.4189 nats


def import_pyplot(needs: str = "--plot needs matplotlib: ") -> object:
    """matplotlib.pyplot on the file-only Agg backend, or our error, opening with `needs`, saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EntropyElboError(f"{needs}pip install 'entropy-elbo[plot]' (or matplotlib)") from None
    return plt


def run_log(path: str | Path) -> list[dict[str, object]]:
    """The log rows of a run folder, of the checkpoint a run wrote, or of a log.jsonl file."""
    path = Path(path)
    folder = path.with_suffix(".run") if path.suffix == ".safetensors" else path
    if path.suffix != ".jsonl" and not (folder / LOG).is_file():
        raise EntropyElboError(f"{path}: no training run here (no {LOG}); pass a run folder or checkpoint that "
                               "`train --out` wrote")
    log = path if path.suffix == ".jsonl" else run_for_resume(path).folder / LOG
    rows = read_log(log)
    if not rows:
        raise EntropyElboError(f"{log}: no epochs logged yet (no JSON object rows); train first")
    for line, row in enumerate(rows, 1):
        check_row(row, rows[0], f"{log}: line {line}")
    return rows


NUMBER_FIELDS = {"epoch": False, "mc_elbo": False, "entropy_elbo": True, "heldout_elbo": True, "relative_gap": True}


def check_row(row: dict[str, object], first: dict[str, object], where: str) -> None:
    """A log row the figures can draw: epoch and mc_elbo numbers, optional numbers or null, H latent entropies."""
    for name, optional in NUMBER_FIELDS.items():
        value = row.get(name)
        if value is None and (optional or (name == "mc_elbo" and row.get("mc_samples") == 0)):  # a monitor row, S = 0
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            what = "is missing" if name not in row else f"is {value!r}, not a number"
            raise EntropyElboError(f"{where}: field {name!r} {what}; the log is damaged or not from `train`")
    ents = row.get("latent_entropies")
    want = len(first.get("latent_entropies") or ())
    if not isinstance(ents, list) or not ents or len(ents) != want or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in ents):
        raise EntropyElboError(f"{where}: field 'latent_entropies' is {'missing' if ents is None else repr(ents)[:60]}"
                               f", not a list of {want or 'H'} numbers as in line 1; the log is damaged")
    fixed = row.get("fixed_batch")
    if fixed is not None and not (isinstance(fixed, dict) and all(
            fixed.get(k) is None or (isinstance(fixed[k], (int, float)) and not isinstance(fixed[k], bool))
            for k in ("mc_elbo", "entropy_elbo", "relative_difference", "n", "mc_stderr"))):
        raise EntropyElboError(f"{where}: field 'fixed_batch' is {repr(fixed)[:60]}, not the fixed batch's numbers "
                               "(mc_elbo, entropy_elbo, relative_difference); the log is damaged")


def run_title(path: str | Path) -> str:
    """'vae1 on ppca (run/)': the model and data a run folder's run.json names, else the path alone."""
    from entropy_elbo.runs import read_settings

    path = Path(path)
    try:
        stored = read_settings(run_for_resume(path).folder) if path.suffix != ".jsonl" else {}
        kind = parse_json(str(stored["model_config"]), str(path))["kind"]  # type: ignore[index]
        data = stored["settings"]["data"]
    except (EntropyElboError, KeyError, TypeError, ValueError):
        return str(path)
    return f"{kind} on {data} ({path})"


def centred_average(values: list[float], window: int) -> list[float]:
    """Moving average over `window` points centred on each point (no lag); near the ends, over the points there."""
    half = window // 2
    out = []
    for i in range(len(values)):
        part = values[max(0, i - half): i + half + 1]
        out.append(sum(part) / len(part))
    return out


def converged_linthresh(gaps: list[float | None]) -> float:
    """The symlog scale's linear range for the relative difference: the largest |gap| of the last half of the
    epochs (the converged part, drawn linearly), at least 0.01 %; larger early values are compressed."""
    tail = [abs(g) for g in gaps[len(gaps) // 2:] if g is not None]
    return max([0.01, *tail])


def symlog_ticks(gaps: list[float | None], linthresh: float) -> tuple[list[float], list[str]]:
    """Ticks of the relative-difference panel that never overlap: 0, +-linthresh (the linear range's ends), then
    +-10^k beyond it, a decade at least a tick apart (matplotlib's default put 10^0 and -10^0 inside the linear range,
    on top of 0)."""
    import math

    top = max([linthresh, *(abs(g) for g in gaps if g is not None)])
    ticks = [0.0, linthresh, -linthresh]
    for k in range(math.floor(math.log10(linthresh)) + 1, math.ceil(math.log10(top)) + 1):
        if 10.0**k >= 3 * linthresh:  # not crowding the end of the linear range
            ticks += [10.0**k, -(10.0**k)]
    ticks = sorted(t for t in ticks if abs(t) <= 10 * top)
    return ticks, [f"{t:+.3g}" if t else "0" for t in ticks]


def plot_run(rows: list[dict[str, object]], out: str | Path, threshold: float = 1.0,  # noqa: ANN201
             title: str | None = None):
    """Four panels: ELBO vs entropies (Fig. 1 top), relative gap in % (Fig. 1 bottom, symlog: linear over the
    converged range), per-latent encoder entropies over training (one labelled line per latent) and of the last
    epoch sorted, collapsed ones red (Fig. 7). The file's extension picks the format. Returns the figure."""
    plt = import_pyplot("plot: needs matplotlib; ")
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    if title:
        fig.suptitle(title)
    elbo_panel(ax[0, 0], rows, epochs)
    difference_panel(ax[1, 0], rows, epochs)
    a, b = ax[0, 0], ax[1, 0]
    c = ax[0, 1]
    h = len(rows[-1]["latent_entropies"])
    cmap = plt.get_cmap("tab20" if h > 10 else "tab10")
    for j in range(h):
        c.plot(epochs, [r["latent_entropies"][j] for r in rows], lw=0.8, color=cmap(j % cmap.N), label=f"z{j}")
    c.axhline(PRIOR_ENTROPY, color="black", ls=":", label=f"prior entropy {PRIOR_ENTROPY:.3f}")
    c.axhline(threshold, color="red", ls="--", label=f"collapse threshold {threshold}")
    c.set(xlabel="epoch", ylabel="mean encoder entropy [nats]", title="per-latent encoder entropies (Fig. 7)")
    for panel in (a, b, c):  # epochs are whole numbers: no tick at 2.5
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
    c.legend(fontsize=6 if h > 10 else 8, ncol=1 + h // 12, loc="best")
    d = ax[1, 1]
    order = sorted(range(h), key=lambda k: -rows[-1]["latent_entropies"][k])
    last = [rows[-1]["latent_entropies"][k] for k in order]
    d.bar(range(h), last, color=["tab:red" if v > threshold else "tab:blue" for v in last])
    d.set_xticks(range(h), [f"z{k}" for k in order], fontsize=7 if h <= 20 else 5, rotation=0 if h <= 20 else 90)
    d.axhline(threshold, color="red", ls="--")
    active = sum(v <= threshold for v in last)
    d.set(xlabel="latent (highest entropy first)", ylabel="mean encoder entropy [nats]",
          title=f"epoch {epochs[-1]}: {active} of {h} latents active (red: collapsed, eq. 24)")
    try:
        save_figure(fig, out, "--out", dpi=110)
    finally:
        plt.close(fig)
    return fig


def elbo_panel(a: object, rows: list[dict[str, object]], epochs: list[object]) -> None:
    """The logged ELBOs: the sampled training ELBO, the held-out one, the entropy ELBO, and the fixed batch's pair
    (MC ELBO and entropy ELBO on the same rows in eval mode) where the log has it."""
    batch = fixed_batches(rows)
    fixed = batch is not None
    if any(r["mc_elbo"] is not None for r in rows):
        where = "the monitor's fixed batch" if "mc_samples" in rows[0] else "training batches"
        a.plot(epochs, [r["mc_elbo"] for r in rows], label=f"ELBO (sampled, {where})", alpha=0.5 if fixed else 1)
    if any(r.get("heldout_elbo") is not None for r in rows):
        a.plot(epochs, [r.get("heldout_elbo") for r in rows], label="ELBO (held-out)")
    if any(r.get("entropy_elbo") is not None for r in rows):
        a.plot(epochs, [r.get("entropy_elbo") for r in rows], "--", label="entropy ELBO (eq. 14 / 22)")
    if batch is not None:
        said = fixed_batch_words(batch)
        a.plot(epochs, [b.get("mc_elbo") for b in batch], color="black", lw=1.2, label=f"MC ELBO ({said})")
        a.plot(epochs, [b.get("entropy_elbo") for b in batch], ":", color="tab:red", lw=1.6,
               label=f"entropy ELBO ({said})")
    a.set(xlabel="epoch", ylabel="nats per data point", title="ELBO and the sum of three entropies")
    a.legend(fontsize=7)


def fixed_batches(rows: list[dict[str, object]]) -> list[dict[str, object]] | None:
    """Each row's fixed-batch numbers ({} where a row has none), or None where the log has no fixed batch."""
    if not any(isinstance(r.get("fixed_batch"), dict) for r in rows):
        return None
    return [r["fixed_batch"] if isinstance(r.get("fixed_batch"), dict) else {} for r in rows]


def fixed_batch_words(batch: list[dict[str, object]]) -> str:
    """'1000 held-out rows, eval': the fixed batch a training log measured, as a legend or title names it."""
    last = next((b for b in reversed(batch) if b), {})
    which = {"holdout": "held-out", "train": "training"}.get(str(last.get("rows")), "fixed")
    return f"fixed {last.get('n', '')} {which} rows, eval".replace("  ", " ")


def difference_series(rows: list[dict[str, object]]) -> tuple[list[float | None], bool, str]:
    """The panel's (ELBO - entropy ELBO) series: (values, in % (else nats), where from). From the fixed batch of a
    training log, or a monitor log's own fixed batch; an old training log has only the sampled training ELBO (said
    so). Where the ELBO crosses 0 or nears it late in the run, the relative difference explodes: the difference in
    nats is drawn instead."""
    batch = fixed_batches(rows)
    if batch is not None:
        mc, f_h, rel = ([b.get(k) for b in batch] for k in ("mc_elbo", "entropy_elbo", "relative_difference"))
        where = f"the {fixed_batch_words(batch)}"
    else:
        mc, f_h, rel = ([r.get(k) for r in rows] for k in ("mc_elbo", "entropy_elbo", "relative_gap"))
        where = ("the monitor's fixed batch" if "mc_samples" in rows[0] else
                 "the sampled training ELBO (noisy: this log has no fixed batch)")
    if crosses_zero(mc, f_h):
        return [None if m is None or f is None else m - f for m, f in zip(mc, f_h, strict=True)], False, where
    return [None if g is None else 100 * g for g in rel], True, where


def crosses_zero(mc: list[float | None], f_h: list[float | None]) -> bool:
    """Whether, over the converged half of the epochs (drawn linearly), the MC ELBO or the entropy ELBO reaches 0, or
    the MC ELBO comes within a tenth of its largest size over the run: dividing by it explodes there."""
    late = len(mc) // 2
    seen = [v for v in mc[late:] + f_h[late:] if v is not None]
    size = max((abs(v) for v in mc if v is not None), default=0.0)
    small = min((abs(v) for v in mc[late:] if v is not None), default=size)
    return bool(seen) and (min(seen) <= 0 <= max(seen) or small < 0.1 * size)


def stderr_band(rows: list[dict[str, object]], relative: bool) -> list[float] | None:
    """2 standard errors of the fixed batch's MC ELBO per epoch (in % of |ELBO| or in nats), else None."""
    batch = fixed_batches(rows)
    if batch is None or not all(b.get("mc_stderr") is not None and b.get("mc_elbo") for b in batch):
        return None
    return [2 * b["mc_stderr"] * (100 / abs(b["mc_elbo"]) if relative else 1) for b in batch]


def difference_panel(b: object, rows: list[dict[str, object]], epochs: list[object]) -> None:
    """(ELBO - entropy ELBO) / |ELBO| in % (Fig. 1 bottom), or in nats where the ELBO crosses 0; symlog, linear over
    the converged range, with ticks that never overlap."""
    gaps, relative, where = difference_series(rows)
    b.plot(epochs, gaps, color="tab:purple")
    b.axhline(0, color="grey", lw=0.8)
    band = stderr_band(rows, relative)
    if band is not None:
        b.fill_between(epochs, [-w for w in band], band, color="tab:purple", alpha=0.15, lw=0,
                       label="+-2 standard errors of the fixed batch's MC ELBO")
        b.legend(fontsize=7, loc="lower right")
    if not any(g is not None for g in gaps):
        b.set_title(f"no ELBO difference to draw from {where}", fontsize=9)
        return
    linthresh = converged_linthresh(gaps)
    b.set_yscale("symlog", linthresh=linthresh)
    b.set_yticks(*symlog_ticks(gaps, linthresh))
    unit = "%" if relative else "nats"
    b.set(xlabel="epoch", ylabel="(ELBO - entropy ELBO) / |ELBO|  [%]" if relative else "ELBO - entropy ELBO [nats]")
    why = "" if relative else "; the ELBO crosses 0, so not relative to it"
    b.set_title(textwrap.fill(f"{'relative ' if relative else ''}difference on {where}{why} (linear within "
                              f"+-{linthresh:.3g} {unit}, logarithmic beyond)", 70), fontsize=9)


def model_name(model: object) -> str:
    """The model as a figure's title names it: our config's kind, else the user's own class (not our adapter)."""
    kind = getattr(getattr(model, "config", None), "kind", None)
    if kind is not None:
        return str(kind)
    inner = getattr(model, "module", None)
    return type(inner if inner is not None else model).__name__


def plot_collapse(result: CollapseResult, path: str, source: str) -> None:
    """A PNG of the mean encoder entropy per latent, highest first, collapsed in red (the paper's Fig. 7, bottom)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise EntropyElboError("--plot needs matplotlib: pip install 'entropy-elbo[plot]'") from None
    order = result.order
    values = [result.mean_entropy[k] for k in order]
    colors = ["tab:red" if result.collapsed["entropy"][k] else "tab:blue" for k in order]
    width = max(4.0, 0.35 * result.h + 1.5)  # inches
    fig = Figure(figsize=(width, 3.2), layout="constrained")
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
    title = f"{source}: {n_active} of {result.h} latents active (eq. 24)"
    ax.set_title(textwrap.fill(title, int(width * 72 / (9 * 0.6))), fontsize=9)  # 9-pt characters ~0.6 em wide
    ax.legend(fontsize=7, loc="best")
    save_figure(fig, path)  # the extension picks the format


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
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
