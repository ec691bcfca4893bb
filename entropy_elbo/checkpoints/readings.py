"""Choosing among the readings that fit a state_dict's weights, by scoring each on a few hundred data rows
(spread evenly over the file).

Weights alone do not say the activation, the output activation, whether the activation also follows the
encoder heads, or how a split head stores its variance. A trained model maximised its ELBO under its own
reading, so each candidate is scored by its Monte Carlo ELBO on the rows (at the learned decoder variance,
or at sigma*^2 = sigma^2 r when the variance is fixed), with the same noise for every candidate. One reading
"clearly beats" another when its mean score is higher by more than 4 standard errors of the paired per-row
difference and by more than MARGIN nats per data point; readings whose scores are identical on every row give
identical numbers there and count as one. Against a convention, and between its amendments, the margin is also
DIM_MARGIN nats per observed dimension (D x 0.01: about a 2% smaller squared error): near-identical functions
(ReLU vs LeakyReLU's 0.01 slope) fit an unconverged model a little differently by chance, and at D = 784 that
is nats per point, while a misread (a wrong output activation or variance parameterization) costs far more.
The rule:
- a convention comes first: a known codebase's when the layer names follow one (the paper authors'
  repositories), else the common default (ReLU, linear output, no activation after the heads, log-variances);
- its reading is taken unless another reading clearly beats it; then the nearest reading that clearly beats it
  (fewest changed choices) is taken when it clearly beats the other nearest ones and no reading clearly beats it;
- otherwise the best reading is taken when it clearly beats every other;
- otherwise the reading stops, listing the candidates, their scores and the flags that pick each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from entropy_elbo.checkpoints.introspect import layer_names
from entropy_elbo.entropies import kl_to_prior, residual_log_likelihood
from entropy_elbo.errors import CheckpointError

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.introspect import Finding
    from entropy_elbo.checkpoints.mlp import MLPLayout

MARGIN = 0.01  # nats per data point
DIM_MARGIN = 0.01  # nats per data point and observed dimension, against a convention (module docstring)
SCORE_ROWS = 256
SCORE_SAMPLES = 8


def spread_rows(n: int, k: int = SCORE_ROWS) -> np.ndarray:
    """Indices of min(n, k) rows spread evenly over all n (i * n // k), so that a file sorted by class or time
    is scored on all its parts, not on its first rows; fancy-indexing a memory-mapped .npy reads only these."""
    return np.arange(min(n, k), dtype=np.int64) * n // min(n, k) if n else np.zeros(0, dtype=np.int64)


class AmbiguousReading(CheckpointError):
    """No reading clearly wins; `candidates` are those that fit about equally well, best first."""

    def __init__(self, message: str, candidates: list[Reading]) -> None:
        super().__init__(message)
        self.candidates = candidates


@dataclass(frozen=True)
class Reading:
    """One way to run a state_dict: each field is one choice the weights leave open, with its flag."""

    activation: str
    output: str = "linear"
    head_activation: bool = False
    enc_param: str | None = None
    dec_param: str | None = None

    def label(self) -> str:
        parts = [f"--activation {self.activation}", f"--output-activation {self.output}"] if self.activation else []
        if self.activation:  # a module with its own methods leaves only the variance parameterizations open
            parts.append("--head-activation" if self.head_activation else "--no-head-activation")
        elif self.output:  # a module's own code: its output read as the mean or through a sigmoid
            parts.append(f"--output-activation {self.output}")
        if self.enc_param:
            parts.append(f"--encoder-var-param {self.enc_param}")
        if self.dec_param:
            parts.append(f"--decoder-var-param {self.dec_param}")
        return " ".join(parts) or "(no flags: the defaults)"


@dataclass
class Scored:
    reading: Reading
    score: float  # mean ELBO over the rows, nats per data point (-inf when the reading breaks down)
    r: float
    a_far: float  # max_h |a_h - 1|
    rows: Tensor | None  # per-row ELBO (float64), None when the reading breaks down


@torch.no_grad()
def score(model: object, x: Tensor, eps: Tensor) -> tuple[Tensor, float, float] | None:
    """Per-row ELBO of `model` on `x` with the given standard-normal noise (S, B, H), r and max |a_h - 1|;
    None when the reading gives non-finite numbers (e.g. a log of a negative std)."""
    nu, log_tau2 = model.encode(x)
    nu, log_tau2 = nu.double(), log_tau2.double().expand_as(nu)
    prior_log_var = model.prior_log_var  # VAE-2's learned diagonal A, else None for N(0, I)
    if not (torch.isfinite(nu).all() and torch.isfinite(log_tau2).all()):
        return None
    s, b, h = eps.shape
    z = (nu + (0.5 * log_tau2).exp() * eps).reshape(s * b, h)
    mu, log_sigma2 = model.decode(z.float())
    mu, log_sigma2 = mu.double().reshape(s, b, -1), log_sigma2.double()
    if log_sigma2.dim() > 0 and log_sigma2.shape[0] == s * b:
        log_sigma2 = log_sigma2.reshape(s, b, -1)
    sq = (mu - x.double().reshape(1, b, -1)).pow(2)  # (S, B, D)
    d = sq.shape[-1]
    if model.decoder_variance == "fixed":  # the best variance given the rest, so that readings compare fairly
        log_sigma2 = torch.log(sq.mean()).reshape(())
    ratio = sq * (-log_sigma2).exp()
    ll = residual_log_likelihood(ratio, log_sigma2, 1).mean(0)  # (B,)
    f = ll - kl_to_prior(nu, log_tau2, prior_log_var)
    a = (nu.pow(2) + log_tau2.exp()).mean(0)
    if prior_log_var is not None:
        a = a / prior_log_var.detach().double().exp()
    if not torch.isfinite(f).all():
        return None
    return f, float(ratio.mean()) if d else 1.0, float((a - 1).abs().max())


def choose(build: Callable[[Reading], object], readings: list[Reading], x: Tensor, convention: str | None = None,
           seed: int = 0, flat: bool = True) -> tuple[Reading, list[Scored], str]:
    """The reading the rule takes on rows `x` (module docstring), the scores, and the evidence sentence;
    `convention` names the codebase whose reading is readings[0], if the layer names follow one; `flat`: the
    models take rows flattened (a state_dict's MLP), else as they come (a module's own code: images stay images)."""
    x = x[torch.from_numpy(spread_rows(len(x)))].float()
    x = x.reshape(len(x), -1) if flat else x
    scored: list[Scored] = []
    eps: Tensor | None = None
    for reading in readings:
        try:
            model = build(reading)
            if eps is None:
                gen = torch.Generator().manual_seed(seed)
                eps = torch.randn((SCORE_SAMPLES, len(x), model.latent_dim), generator=gen, dtype=torch.float64)
            got = score(model, x, eps)
        except (RuntimeError, ValueError):  # a shape or value the reading cannot run on
            got = None
        scored.append(Scored(reading, -math.inf, math.nan, math.nan, None) if got is None else
                      Scored(reading, float(got[0].mean()), got[1], got[2], got[0]))
    prior = scored[0]
    scored.sort(key=lambda c: c.score, reverse=True)
    best = scored[0]
    if best.rows is None:
        raise CheckpointError("no reading of the weights gives finite numbers on the data; pass --model FILE.py:NAME")
    anchor = _anchor(scored, prior, max(MARGIN, DIM_MARGIN * x[0].numel())) if convention is not None else None
    best = anchor or best
    same, close = [], []
    for other in scored:
        if other is best or other.rows is None:
            continue
        clear, identical = _beats(best, other)
        if identical:
            same.append(other)
        elif not clear and anchor is None:
            close.append(other)
    if close:
        listed = "; ".join(f"`{c.reading.label()}` gives ELBO {c.score:.4f}, r {c.r:.3g}, max|a_h-1| {c.a_far:.3g}"
                           for c in [best, *close][:6])
        raise AmbiguousReading(f"several readings of the weights fit the data about equally well (Monte Carlo ELBO "
                               f"in nats per data point on {len(x)} rows): {listed}; pick one with its flags",
                               [best.reading, *(c.reading for c in close)])
    runner = next((c for c in scored if c is not best and c.rows is not None and c not in same), None)
    changed = [f for f in ("activation", "output", "head_activation", "enc_param", "dec_param")
               if getattr(best.reading, f) != getattr(prior.reading, f)]
    evidence = "" if convention is None else (f"{convention}; " if best is prior else
                                              f"{convention}, but the data clearly prefer another {', '.join(changed)}"
                                              f" ({best.reading.label()}); " if anchor is not None else
                                              f"{convention} set aside: another reading clearly beats it; ")
    evidence += (f"scored on {len(x)} data rows: Monte Carlo ELBO {best.score:.4f} nats per data point "
                 f"(r {best.r:.3g}, max|a_h-1| {best.a_far:.3g})")
    if runner is not None:
        where = "ahead of" if runner.score <= best.score else "beside"
        evidence += (f", {where} the next reading ({runner.reading.label()}) at {runner.score:.4f}"
                     f" of {len(scored)} candidates")
    if same:
        evidence += f"; identical on these rows: {', '.join(c.reading.label() for c in same[:3])}"
    return best.reading, scored, evidence


def _distance(a: Reading, b: Reading) -> int:
    return sum(getattr(a, f) != getattr(b, f) for f in ("activation", "output", "head_activation", "enc_param",
                                                         "dec_param"))


def _anchor(scored: list[Scored], prior: Scored, margin: float) -> Scored | None:
    """The convention's reading, amended only where the data insist: itself when nothing clearly beats it, else
    the nearest reading (fewest changed choices) that clearly beats it, when nothing clearly beats that one."""
    if prior.rows is None:
        return None
    live = [c for c in scored if c.rows is not None]
    better = [c for c in live if c is not prior and _beats(c, prior, margin)[0]]
    if not better:
        return prior
    nearest = min(_distance(c.reading, prior.reading) for c in better)
    near = [c for c in better if _distance(c.reading, prior.reading) == nearest]
    candidate = near[0]  # the best-scored of the nearest
    if any(not _beats(candidate, o, margin)[0] and not _beats(candidate, o, margin)[1] for o in near[1:]):
        return None  # two amendments fit about equally well
    return None if any(_beats(o, candidate, margin)[0] for o in live if o is not candidate) else candidate


def _beats(a: Scored, b: Scored, margin: float = MARGIN) -> tuple[bool, bool]:
    """(a clearly beats b, a and b score identically on every row)."""
    diff = a.rows - b.rows
    if float(diff.abs().max()) <= 1e-9 * (1 + float(a.rows.abs().max())):
        return False, True
    se = float(diff.std()) / math.sqrt(len(diff)) if len(diff) > 1 else math.inf
    return float(diff.mean()) > max(4 * se, margin), False


AUTHORS_MAIN = {"encoder_hidden", "encoder_hidden2", "encoder_mu", "encoder_logvar", "decoder_hidden",
                "decoder_hidden2", "decoder_out"}


def reading_convention(state: dict[str, Tensor], layout: MLPLayout,
                       decoder: Finding) -> tuple[str, dict[str, object]]:
    """The convention whose reading comes first (readings.choose): a known codebase whose layer names the
    state_dict follows, else the common default."""
    names = set(layer_names(state))
    if names >= AUTHORS_MAIN:
        return ("the paper authors' main.py/model.py layer names: LeakyReLU after every layer, both encoder heads "
                "and the decoder output"), {"activation": "leaky_relu", "head_activation": True, "output": "leaky_relu"}
    sequential = all(n.startswith(("encoder.", "decoder.")) or n in ("encoder", "decoder") for n in names)
    if sequential and (decoder.name in ("noise_std", "sigma_param") or layout.dec_split):
        usual: dict[str, object] = {"activation": "relu", "output": "linear"}
        if layout.split:
            usual["enc_param"] = "softplus_std"
        if layout.dec_split:
            usual["dec_param"] = "softplus_std"
        return ("the paper authors' verification/VAE.py and streamingVAE convention (encoder/decoder Sequentials "
                "with ReLU, a softplus std in the second half of a 2 x H or 2 x D output, softplus(noise_std))"), usual
    return ("no known codebase's names, so the common default (ReLU between layers, a linear output, no activation "
            "after the heads, log-variances)"), {"activation": "relu", "output": "linear", "head_activation": False,
                                                 "enc_param": "logvar", "dec_param": "logvar"}
