"""How good is each ELBO estimate: spread across random data subsets, and cost (Sec. 4, Fig. 2(b), Fig. 6).

For each subset size n we draw `repeats` random subsets of n data points (without replacement, from a
seeded numpy generator) and run every estimator on the same subsets:

- ``entropy``: the entropy ELBO (Thm. 2, eq. 14): only the encoder's variance head depends on the data.
  For a variance network (VAE-3, Thm. 3, eq. 22) its decoder entropy is sampled, running only that network.
- ``mc1``, ``mc100``: the Monte Carlo ELBO (eq. 2) with 1 and with the paper's 100 samples per point.
- ``decoder_entropy`` (VAE-3 only): the sampled decoder entropy alone, the one sampled part of the entropy ELBO.

Speed ratio at equal standard deviation. Every estimator averages independent per-point terms over the n
points (each with fresh samples z for Monte Carlo), so its standard deviation falls as 1/sqrt(n) while its
time grows as n. To bring Monte Carlo's standard deviation std_mc down to the entropy ELBO's std_H it needs
(std_mc / std_H)^2 times as many points (or, where sampling noise dominates, as many samples), i.e. time
time_mc * (std_mc / std_H)^2. The speed ratio is that cost over the entropy ELBO's own time time_H:

    speed_ratio = time_mc * (std_mc / std_H)^2 / time_H = variance_ratio * time_mc / time_H.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from entropy_elbo import entropies
from entropy_elbo.atomic import save_figure
from entropy_elbo.data import iter_batches
from entropy_elbo.elbo import FIXED_NOTE, UNITS, estimate
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models.protocol import GaussianVAE
from entropy_elbo.montecarlo import sampled_decoder_entropy

DEFAULT_SIZES = (10, 100, 1000, 10000)
DEFAULT_MC_SAMPLES = (1, 100)  # 100: the paper's sample count (Fig. 1)
TIE = 1e-7  # relative std below float32 resolution: the estimator has no spread to compare against


@dataclass
class EstimatorRun:
    """One estimator at one subset size: its estimates over the repeats, their spread and its time."""

    estimator: str  # entropy | mc<S> | decoder_entropy
    how: str
    n: int
    values: list[float]
    mean: float
    std: float  # across repeats (ddof=1)
    seconds: float  # mean wall time per repeat
    variance_ratio: float | None = None  # std^2 / std_entropy^2, Monte Carlo rows only
    speed_ratio: float | None = None  # time to reach std_entropy / time of the entropy ELBO, Monte Carlo rows only


@dataclass
class Comparison:
    """All estimators at all subset sizes, in nats per data point."""

    source: str
    n_data: int
    d: int
    h: int
    decoder_variance: str
    sizes: list[int]
    repeats: int
    seed: int
    mc_samples: list[int]
    runs: list[EstimatorRun]
    note: str | None = None
    units: str = UNITS
    ratio_formula: str = "variance_ratio = (std_mc/std_H)^2; speed_ratio = variance_ratio * time_mc / time_H"
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["other_units"] = {  # the figures not in nats per data point
            "runs.n": "data points per subset", "runs.seconds": "seconds of wall time per repeat",
            "runs.variance_ratio": "ratio of variances", "runs.speed_ratio": "ratio of times to equal precision",
            "n_data": "data points", "sizes": "data points", "mc_samples": "samples per data point"}
        return out

    def run(self, estimator: str, n: int) -> EstimatorRun | None:
        """The run of `estimator` at size n, if any."""
        return next((r for r in self.runs if r.estimator == estimator and r.n == n), None)


Estimator = Callable[[list[np.ndarray]], float]


def entropy_elbo_sampled(
    model: GaussianVAE, batches: Iterable[np.ndarray], d: int, samples: int, generator: torch.Generator | None,
    device: torch.device,
) -> tuple[float, float]:
    """Entropy ELBO of a variance-network VAE with sampled decoder entropy (Thm. 3, eq. 22), and that entropy."""
    enc = dec = 0.0
    n = 0
    with torch.inference_mode():
        for batch in batches:
            x = torch.as_tensor(batch).to(device=device, dtype=torch.float32)
            nu, log_tau2 = model.encode(x)  # (B, H) each
            enc += float(entropies.encoder_entropy(log_tau2).sum())
            dec += float(sampled_decoder_entropy(model, nu, log_tau2, d, samples, generator).sum())
            n += x.shape[0]
        prior_log_var = model.prior_log_var
        prior = entropies.prior_entropy(model.latent_dim, None if prior_log_var is None else prior_log_var.detach())
    return entropies.entropy_elbo(enc / n, prior, dec / n), dec / n


def estimators(
    model: GaussianVAE, d: int, mc_samples: Sequence[int], generator: torch.Generator, device: torch.device,
    entropy_samples: int = 1,
) -> dict[str, tuple[str, Estimator]]:
    """The estimators to compare, by name: (how it is obtained, function of a list of batches -> nats per point)."""
    kind = model.decoder_variance
    out: dict[str, tuple[str, Estimator]] = {}
    if kind == "network":
        how = f"encoder - prior - decoder entropy, {entropy_samples} z per point through the variance net (eq. 22)"
        out["entropy"] = (how, lambda b: entropy_elbo_sampled(model, b, d, entropy_samples, generator, device)[0])
        out["decoder_entropy"] = (
            f"sampled decoder entropy alone, {entropy_samples} z per point (eq. 22)",
            lambda b: entropy_elbo_sampled(model, b, d, entropy_samples, generator, device)[1],
        )
    elif kind != "fixed":
        out["entropy"] = (
            "encoder - prior - decoder entropy (Thm. 2, eq. 14), no sampling",
            lambda b: float(estimate(model, b, samples=0, device=device, d=d).entropy_elbo),
        )
    for s in mc_samples:
        out[f"mc{s}"] = (
            f"Monte Carlo ELBO (eq. 2), {s} sample{'s' if s > 1 else ''} per point",
            lambda b, s=s: float(estimate(model, b, samples=s, generator=generator, device=device, d=d).mc_elbo),
        )
    return out


def timed(fn: Estimator, batches: list[np.ndarray]) -> tuple[float, float]:
    """(value, wall seconds); the estimators return Python floats, so a GPU has finished when they return."""
    start = time.perf_counter()
    value = fn(batches)
    return value, time.perf_counter() - start


def check_sizes(sizes: Sequence[int] | None, repeats: int, n_data: int, source: str) -> list[int]:
    """Subset sizes must lie in [1, N] (None: the defaults below N); a standard deviation needs 2 repeats."""
    if repeats < 2:
        raise EntropyElboError(f"repeats (--repeats): got {repeats}; a standard deviation needs at least 2 repeats")
    if sizes is None:  # below N: every subset of N rows is the whole data (zero spread, no ratio), at the most cost
        sizes = [n for n in DEFAULT_SIZES if n < n_data] or [max(1, n_data // 2)]
    sizes = sorted({int(n) for n in sizes})
    if not sizes or sizes[0] < 1:
        raise EntropyElboError(f"sizes (--sizes): got {sizes}; pass positive subset sizes such as 10,100,1000")
    if sizes[-1] > n_data:
        raise EntropyElboError(
            f"sizes (--sizes): {sizes[-1]} exceeds the {n_data} rows of {source}; pass sizes of at most {n_data}"
        )
    return sizes


def compare(
    model: GaussianVAE,
    x: np.ndarray,
    *,
    sizes: Sequence[int] | None = None,
    repeats: int = 10,
    mc_samples: Sequence[int] = DEFAULT_MC_SAMPLES,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 4096,
    source: str = "data",
    entropy_samples: int = 1,
    on_work: Callable[[int], None] | None = None,
) -> Comparison:
    """Every estimator on `repeats` random subsets of each size n (Fig. 2(b), Fig. 6), with spread, time and ratios.

    Each subset is read into memory once (n rows as float32) and shared by all estimators; sizes default to
    10, 100, 1000, 10000 up to the number of rows N. `on_work` is told the rows of each subset when done.
    """
    device = torch.device(device)
    n_data, d = x.shape[0], int(np.prod(x.shape[1:]))
    sizes = check_sizes(sizes, repeats, n_data, source)
    if not mc_samples or min(mc_samples) < 1:
        raise EntropyElboError(f"mc_samples (--mc-samples): got {list(mc_samples)}; pass positive sample counts "
                               "such as 1,100")
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    ests = estimators(model, d, mc_samples, gen, device, entropy_samples)
    warm = list(iter_batches(x, batch_size, source=source, indices=np.arange(min(10, n_data))))
    for _, fn in ests.values():  # first calls pay one-off costs (allocations, kernel loading): keep them untimed
        fn(warm)
    runs: list[EstimatorRun] = []
    for n in sizes:
        values: dict[str, list[float]] = {name: [] for name in ests}
        seconds: dict[str, float] = dict.fromkeys(ests, 0.0)
        for rep in range(repeats):
            idx = rng.choice(n_data, size=n, replace=False)
            batches = list(iter_batches(x, batch_size, source=source, indices=idx))  # read once, outside the timing
            order = list(ests)
            for name in order[rep % len(order):] + order[: rep % len(order)]:  # rotate: no estimator always first
                fn = ests[name][1]
                value, dt = timed(fn, batches)
                values[name].append(value)
                seconds[name] += dt
            if on_work is not None:
                on_work(n)
        runs.extend(
            EstimatorRun(name, how, n, values[name], float(np.mean(values[name])), float(np.std(values[name], ddof=1)),
                         seconds[name] / repeats)
            for name, (how, _) in ests.items()
        )
    add_ratios(runs)
    note = FIXED_NOTE if model.decoder_variance == "fixed" else None
    return Comparison(source, n_data, d, model.latent_dim, model.decoder_variance, sizes, repeats, seed,
                      [int(s) for s in mc_samples], runs, note)


def speed_ratio(std_mc: float, time_mc: float, std_h: float, time_h: float) -> float:
    """Time Monte Carlo needs to reach std_h, time_mc * (std_mc/std_h)^2, over the entropy ELBO's time."""
    return time_mc * (std_mc / std_h) ** 2 / time_h


def add_ratios(runs: list[EstimatorRun]) -> None:
    """Fill each Monte Carlo run's variance and speed ratio against the entropy ELBO at the same n.

    Left None where the entropy ELBO has no spread beyond float32 rounding (a linear VAE, whose entropy ELBO
    needs no data, or n = N, where every subset is the whole data): Monte Carlo never catches up there.
    """
    entropy = {r.n: r for r in runs if r.estimator == "entropy"}
    for r in runs:
        h = entropy.get(r.n)
        if not r.estimator.startswith("mc") or h is None or h.std <= TIE * abs(h.mean) or h.std == 0:
            continue
        r.variance_ratio = (r.std / h.std) ** 2
        r.speed_ratio = speed_ratio(r.std, r.seconds, h.std, h.seconds) if h.seconds > 0 else None


def parse_sizes(text: str, flag: str = "--sizes") -> list[int]:
    """'10,100,1e3' -> [10, 100, 1000]."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EntropyElboError(f"{flag}: {text!r} is not a comma-separated list of counts, e.g. 10,100") from None
    if not values or any(v < 1 or v != int(v) for v in values):
        raise EntropyElboError(f"{flag}: {text!r} needs positive whole counts such as 10,100,1000")
    return [int(v) for v in values]


def plot_comparison(cmp: Comparison, path: str | Path) -> Path:
    """Fig. 2(b) / Fig. 6: estimates vs subset size n (top) and their standard deviation on a log scale (bottom)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EntropyElboError("--plot needs matplotlib: pip install 'entropy-elbo[plot]' (or matplotlib)") from None
    path = Path(path)
    if not path.parent.is_dir():
        raise EntropyElboError(f"--plot {path}: folder {path.parent} does not exist; create it first")
    names = list(dict.fromkeys(r.estimator for r in cmp.runs))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.4), sharex=True)
    for i, name in enumerate(names):
        runs = [r for r in cmp.runs if r.estimator == name]
        name_shown = label(name)
        shift = 1.08 ** (i - (len(names) - 1) / 2)  # spread the clouds sideways on the log axis
        xs = np.repeat([r.n * shift for r in runs], cmp.repeats)
        ys = np.concatenate([r.values for r in runs])
        dots = top.scatter(xs, ys, s=8, alpha=0.6, label=name_shown)
        top.axhline(runs[-1].mean, ls=":", lw=1, color=dots.get_facecolor()[0])  # mean at the largest n
        spread(bottom, runs, name_shown, dots.get_facecolor()[0])
    top.set_xscale("log")
    top.set_ylabel(f"estimate ({cmp.units})")
    top.set_title(f"ELBO estimates over {cmp.repeats} random subsets of n points")
    top.legend(fontsize="small")
    if not all(rounding_only(r) for r in cmp.runs):
        bottom.set_yscale("log")
    if any(rounding_only(r) for r in cmp.runs):
        bottom.set_title("v on the axis: no spread beyond float32 rounding (every subset gives the same value)",
                         fontsize="small")
    bottom.set_xlabel("subset size n (data points)")
    bottom.set_ylabel("standard deviation across repeats")
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
    return path


def spread(ax: object, runs: list, name: str, color: object) -> None:
    """Standard deviations over the repeats: positive ones as a line on the log axis, zeros as a marker on the
    axis itself (a log axis has no 0; drawn at 1e-300 it spanned 300 decades)."""
    positive = [(r.n, r.std) for r in runs if not rounding_only(r)]
    if positive:
        ax.plot(*zip(*positive, strict=True), "o-", label=name, color=color)
    zeros = [r.n for r in runs if rounding_only(r)]
    if zeros:
        ax.scatter(zeros, [0.0] * len(zeros), marker="v", s=40, color=color, clip_on=False, zorder=3,
                   transform=ax.get_xaxis_transform(), label=None if positive else f"{name}: spread 0")


def rounding_only(run: object) -> bool:
    """A spread within float32 rounding of the mean (1e-6 of it): the same value from every subset (n = N, or a
    linear VAE's entropy ELBO), drawn as zero rather than as a point decades below the others."""
    return run.std <= 1e-6 * max(1.0, abs(run.mean))


def label(name: str) -> str:
    """A human name for an estimator key: entropy, decoder_entropy, mc<S>."""
    if name == "entropy":
        return "entropy ELBO"
    if name == "decoder_entropy":
        return "decoder entropy"
    return f"MC ELBO S={name[2:]}"
