"""Posterior collapse per latent: the paper's entropy criterion (eq. 24) beside the two metrics peers use.

Three verdicts per latent h, all from the encoder alone (no decoder, so fixed-variance models work too):

- entropy (eq. 24, App. C.2): collapsed when mean_n H[q(z_h|x_n)] > H[p(z_h)] - delta; the paper's
  threshold H[p(z_h)] - delta = 1.0 nat (delta ~ 0.419 for the standard normal prior).
- active units (Burda et al. 2016): active when Var_n[nu_nh] > 0.01, the variance over the data of the
  encoder mean E_q[z_h] (population variance, divided by N); collapsed otherwise.
- (epsilon, delta)-collapse (Lucas et al. 2019; the paper's eq. 71): collapsed when
  P_x[KL(q(z_h|x) || p(z_h)) < epsilon] >= 1 - delta. P_x is the empirical distribution of the data
  given, so the statistic is the fraction p_h = #{n : KL_nh < epsilon} / N of data points whose
  per-latent KL lies below epsilon. It is a count divided by N, so the stream keeps one integer
  count per latent and no per-point KL. The inequality is ">= 1 - delta" as in Lucas et al.: the
  paper's eq. 71 prints "<=", which inverts the verdict (a latent whose KL exceeds epsilon at every
  data point would count as collapsed).

All sums are float64 and come from one streaming pass in chunks; the state is a few (H,) vectors, so
memory does not grow with N. Entropies and KLs are in nats (per data point, per latent).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from entropy_elbo.choices import ACTIVE_THRESHOLD, LUCAS_DELTA, LUCAS_EPSILON
from entropy_elbo.entropies import LOG_2PI_E, gaussian_entropy, latent_kl
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models.protocol import GaussianVAE, check_protocol
from entropy_elbo.pass_checks import check_encoder_output
from entropy_elbo.stationarity import encoder_far_warning

PRIOR_ENTROPY = 0.5 * LOG_2PI_E  # H[N(0, 1)] = 0.5 log(2 pi e) ~ 1.4189 nats
PAPER_THRESHOLD = 1.0  # nats; Fig. 3b and Fig. 7 of the paper
METRICS = ("entropy", "active_units", "lucas")


def latent_entropy(log_tau2: Tensor) -> Tensor:
    """Entropy of each q(z_h|x_n), H = 0.5 log(2 pi e tau^2) (eq. 24, left side): (B, H) -> (B, H)."""
    return gaussian_entropy(log_tau2)


@dataclass(frozen=True)
class CollapseSums:
    """Float64 running statistics over rows seen so far, each (H,); mergeable with `merge_sums`."""

    n: int
    entropy: Tensor  # sum_n H[q(z_h|x_n)]
    kl: Tensor  # sum_n KL_nh
    nu_mean: Tensor  # mean_n nu_nh
    nu_m2: Tensor  # sum_n (nu_nh - nu_mean_h)^2
    small_kl: Tensor  # #{n : KL_nh < epsilon}
    epsilon: float
    tau2: Tensor | None = None  # sum_n tau_nh^2, for a_h = mean_n(nu^2 + tau^2) (eq. 76)


def chunk_sums(nu: Tensor, log_tau2: Tensor, *, prior_log_var: Tensor | None = None,
               epsilon: float = LUCAS_EPSILON) -> CollapseSums:
    """The statistics of one chunk of encoder outputs nu, log tau^2, each (B, H)."""
    nu, log_tau2 = nu.detach().double(), log_tau2.detach().double().expand_as(nu)
    kl = latent_kl(nu, log_tau2, None if prior_log_var is None else prior_log_var.detach())  # (B, H)
    mean = nu.mean(0)
    return CollapseSums(
        n=int(nu.shape[0]), entropy=latent_entropy(log_tau2).sum(0), kl=kl.sum(0), nu_mean=mean,
        nu_m2=(nu - mean).pow(2).sum(0), small_kl=(kl < epsilon).double().sum(0), epsilon=epsilon,
        tau2=log_tau2.exp().sum(0),
    )


def merge_sums(a: CollapseSums, b: CollapseSums) -> CollapseSums:
    """Statistics of the union of two disjoint row sets (Chan et al.'s pairwise update for the variance)."""
    n = a.n + b.n
    diff = b.nu_mean - a.nu_mean
    return CollapseSums(
        n=n, entropy=a.entropy + b.entropy, kl=a.kl + b.kl, nu_mean=a.nu_mean + diff * (b.n / n),
        nu_m2=a.nu_m2 + b.nu_m2 + diff.pow(2) * (a.n * b.n / n), small_kl=a.small_kl + b.small_kl,
        epsilon=a.epsilon, tau2=None if a.tau2 is None or b.tau2 is None else a.tau2 + b.tau2,
    )


@dataclass
class CollapseResult:
    """Per-latent statistics (lists indexed by latent h) and each metric's verdict; nats per latent."""

    n: int
    h: int
    prior_entropy: list[float]  # H[p(z_h)]
    mean_entropy: list[float]  # mean_n H[q(z_h|x_n)]
    mean_kl: list[float]  # mean_n KL(q(z_h|x_n) || p(z_h))
    mean_variance: list[float]  # Var_n[nu_nh], the active-units statistic
    lucas_fraction: list[float]  # #{n : KL_nh < epsilon} / N
    entropy_threshold: list[float]  # H[p(z_h)] - delta
    collapsed: dict[str, list[bool]]  # metric -> verdict per latent
    settings: dict[str, object]
    latent_shape: list[int] | None = None  # spatial latents (channels, h, w), flattened channel-major to H
    warnings: list[str] = field(default_factory=list)  # a_h = mean_n(nu^2 + tau^2) far from 1 (eq. 76)

    @property
    def distance_to_prior(self) -> list[float]:
        """H[p(z_h)] - mean_n H[q(z_h|x_n)]: >= 0 at stationary points (eq. 74); collapsed when < delta."""
        return [p - e for p, e in zip(self.prior_entropy, self.mean_entropy, strict=True)]

    @property
    def order(self) -> list[int]:
        """Latents by mean encoder entropy, highest (most collapsed) first, as in Fig. 7 (bottom)."""
        return sorted(range(self.h), key=lambda k: -self.mean_entropy[k])

    @property
    def counts(self) -> dict[str, int]:
        """Number of collapsed latents per metric."""
        return {m: sum(v) for m, v in self.collapsed.items()}

    @property
    def disagreements(self) -> list[int]:
        """Latents on which the three metrics do not all agree, in `order`."""
        return [k for k in self.order if len({self.collapsed[m][k] for m in METRICS}) > 1]

    def latent_rows(self) -> list[dict[str, object]]:
        """One dict per latent, sorted by mean encoder entropy (highest first)."""
        gap = self.distance_to_prior
        return [{
            "latent": k, "mean_encoder_entropy": self.mean_entropy[k], "prior_entropy": self.prior_entropy[k],
            "distance_to_prior_entropy": gap[k], "entropy_threshold": self.entropy_threshold[k],
            "mean_kl": self.mean_kl[k], "encoder_mean_variance": self.mean_variance[k],
            "lucas_fraction_kl_below_epsilon": self.lucas_fraction[k],
            "collapsed": {m: self.collapsed[m][k] for m in METRICS},
        } for k in self.order]

    def channel_rows(self) -> list[dict[str, object]]:
        """Spatial latents: per channel, eq. 24 on the entropy averaged over its positions, and each metric's count."""
        if not self.latent_shape:
            return []
        positions = math.prod(self.latent_shape[1:])
        rows = []
        for c in range(self.latent_shape[0]):
            span = range(c * positions, (c + 1) * positions)
            ent = [self.mean_entropy[k] for k in span]
            mean = math.fsum(ent) / positions
            cut = math.fsum(self.entropy_threshold[k] for k in span) / positions
            rows.append({"channel": c, "positions": positions, "mean_encoder_entropy": mean,
                         "min_encoder_entropy": min(ent), "max_encoder_entropy": max(ent),
                         "mean_kl": math.fsum(self.mean_kl[k] for k in span) / positions,
                         "collapsed": mean > cut,
                         "collapsed_positions": {m: sum(self.collapsed[m][k] for k in span) for m in METRICS}})
        return rows

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["encoder_mean_variance"] = out.pop("mean_variance")  # Var_n[nu_nh], not a mean of variances
        out.update(distance_to_prior=self.distance_to_prior, order=self.order, counts=self.counts,
                   active={m: self.h - c for m, c in self.counts.items()}, disagreements=self.disagreements,
                   latents=self.latent_rows(), units="nats per latent, averaged over data points",
                   other_units={"encoder_mean_variance": "variance of the encoder mean over the data (latent units^2)",
                                "lucas_fraction": "fraction of data points", "n": "data points", "h": "latents",
                                "counts": "latents", "active": "latents"})
        if self.latent_shape:
            out["channels"] = self.channel_rows()
        return out


def check_settings(threshold: float | None, delta: float | None, active_threshold: float, lucas_epsilon: float,
                   lucas_delta: float) -> None:
    """User errors in the four thresholds, as one-line messages."""
    if threshold is not None and delta is not None:
        raise EntropyElboError(f"--threshold {threshold} and --delta {delta}: give one of them, not both")
    for flag, value in (("--threshold", threshold), ("--delta", delta)):
        if value is not None and not math.isfinite(value):
            raise EntropyElboError(f"{flag}: got {value}; pass a finite number of nats")
    if not active_threshold >= 0 or not math.isfinite(active_threshold):
        raise EntropyElboError(f"--active-threshold: got {active_threshold}; pass a variance >= 0")
    if not lucas_epsilon > 0 or not math.isfinite(lucas_epsilon):
        raise EntropyElboError(f"--lucas-epsilon: got {lucas_epsilon}; pass a KL in nats > 0")
    if not 0 <= lucas_delta < 1:
        raise EntropyElboError(f"--lucas-delta: got {lucas_delta}; pass a fraction in [0, 1)")


def summarize_collapse(sums: CollapseSums, *, prior_log_var: Tensor | None = None, threshold: float | None = None,
                       delta: float | None = None, active_threshold: float = ACTIVE_THRESHOLD,
                       lucas_delta: float = LUCAS_DELTA) -> CollapseResult:
    """The three verdicts from the streamed statistics (eq. 24; Burda et al. 2016; Lucas et al. 2019, eq. 71).

    With `delta`, latent h is collapsed when its mean entropy exceeds H[p(z_h)] - delta; with `threshold`
    (default 1.0 nat, the paper's) when it exceeds that fixed number. Both are the same rule for N(0, 1).
    """
    check_settings(threshold, delta, active_threshold, sums.epsilon, lucas_delta)
    n, h = sums.n, int(sums.entropy.shape[0])
    if prior_log_var is None:
        prior = torch.full((h,), PRIOR_ENTROPY, dtype=torch.float64)
    else:
        prior = gaussian_entropy(prior_log_var.detach().cpu()).expand(h)  # (H,)
    if delta is not None:
        cut = prior - delta
    else:
        cut = torch.full((h,), PAPER_THRESHOLD if threshold is None else threshold, dtype=torch.float64)
    entropy = sums.entropy.cpu() / n
    variance = sums.nu_m2.cpu() / n
    fraction = sums.small_kl.cpu() / n
    collapsed = {
        "entropy": (entropy > cut).tolist(),
        "active_units": (variance <= active_threshold).tolist(),
        "lucas": (fraction >= 1 - lucas_delta).tolist(),
    }
    settings = {"threshold": None if delta is not None else float(cut[0]), "delta": delta,
                "active_threshold": active_threshold, "lucas_epsilon": sums.epsilon, "lucas_delta": lucas_delta}
    return CollapseResult(
        n=n, h=h, prior_entropy=prior.tolist(), mean_entropy=entropy.tolist(), mean_kl=(sums.kl.cpu() / n).tolist(),
        mean_variance=variance.tolist(), lucas_fraction=fraction.tolist(), entropy_threshold=cut.tolist(),
        collapsed=collapsed, settings=settings, warnings=collapse_warnings(sums, prior_log_var),
    )


def encoder_a(sums: CollapseSums, prior_log_var: Tensor | None = None) -> Tensor | None:
    """a_h = mean_n(nu_nh^2 + tau_nh^2), over the prior's variances for a learned prior (eq. 76), (H,) float64;
    None when the sums lack tau^2."""
    if sums.tau2 is None:
        return None
    a = (sums.nu_m2.cpu() + sums.tau2.cpu()) / sums.n + sums.nu_mean.cpu().pow(2)  # mean nu^2 = Var + mean^2
    return a if prior_log_var is None else a / prior_log_var.detach().cpu().double().exp()


def collapse_warnings(sums: CollapseSums, prior_log_var: Tensor | None = None) -> list[str]:
    """The encoder's stationarity check, which needs no decoder: a_h far from 1 (as `estimate` warns)."""
    a = encoder_a(sums, prior_log_var)
    far = None if a is None else encoder_far_warning(a.tolist(), elbo=False)
    return [] if far is None else [far]


def stream_sums(encodings: Iterable[tuple[Tensor, Tensor]], *, prior_log_var: Tensor | None = None,
                epsilon: float = LUCAS_EPSILON) -> CollapseSums:
    """One pass over chunks of (nu, log tau^2), folding each chunk's statistics into the running ones."""
    total: CollapseSums | None = None
    for nu, log_tau2 in encodings:
        if nu.shape[0] == 0:
            continue
        check_encoder_output(nu.detach(), log_tau2.detach().expand_as(nu), 0 if total is None else total.n)
        part = chunk_sums(nu, log_tau2, prior_log_var=prior_log_var, epsilon=epsilon)
        total = part if total is None else merge_sums(total, part)
    if total is None:
        raise EntropyElboError("data: no rows to measure collapse over; pass a file with at least one data point")
    return total


def collapse_from_encodings(encodings: Iterable[tuple[Tensor, Tensor]], *, prior_log_var: Tensor | None = None,
                            threshold: float | None = None, delta: float | None = None,
                            active_threshold: float = ACTIVE_THRESHOLD, lucas_epsilon: float = LUCAS_EPSILON,
                            lucas_delta: float = LUCAS_DELTA) -> CollapseResult:
    """The three collapse metrics over chunks of encoder means and log-variances (eq. 24, eq. 71)."""
    check_settings(threshold, delta, active_threshold, lucas_epsilon, lucas_delta)
    sums = stream_sums(encodings, prior_log_var=prior_log_var, epsilon=lucas_epsilon)
    return summarize_collapse(sums, prior_log_var=prior_log_var, threshold=threshold, delta=delta,
                              active_threshold=active_threshold, lucas_delta=lucas_delta)


def collapse(model: GaussianVAE, batches: Iterable[np.ndarray | Tensor], *, device: torch.device | str = "cpu",
             threshold: float | None = None, delta: float | None = None, active_threshold: float = ACTIVE_THRESHOLD,
             lucas_epsilon: float = LUCAS_EPSILON, lucas_delta: float = LUCAS_DELTA) -> CollapseResult:
    """Per-latent collapse of `model` over `batches`, running only its encoder (eq. 24; App. C.2)."""
    check_protocol(model, ("encode", "prior_log_var"))
    prior_log_var = None if model.prior_log_var is None else model.prior_log_var.detach()
    return collapse_from_encodings(
        encoder_outputs(model, batches, torch.device(device)), prior_log_var=prior_log_var, threshold=threshold,
        delta=delta, active_threshold=active_threshold, lucas_epsilon=lucas_epsilon, lucas_delta=lucas_delta,
    )


def encoder_outputs(model: GaussianVAE, batches: Iterable[np.ndarray | Tensor],
                    device: torch.device) -> Iterable[tuple[Tensor, Tensor]]:
    """The encoder's (nu, log tau^2), each (B, H), chunk by chunk, under inference mode; outputs that are NaN or
    overflow are refused here, where the model is known, so NaN its own weights hold is blamed on them, not a row."""
    first_row = 0
    for b in batches:
        if not isinstance(b, Tensor):  # a read-only memmap chunk is copied once, as torch needs
            b = torch.from_numpy(np.require(b, dtype=np.float32, requirements=["C", "W"]))
        x = b.to(device=device, dtype=torch.float32)  # (B, ...)
        with torch.inference_mode():
            nu, log_tau2 = model.encode(x)  # (B, H) each
        check_encoder_output(nu, log_tau2.expand_as(nu), first_row, model)
        first_row += x.shape[0]
        yield nu, log_tau2
