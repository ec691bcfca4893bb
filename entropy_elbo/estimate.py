"""One streaming pass over the data: entropy ELBO, Monte Carlo ELBO and the stationarity figures.

All sums are float64 and every figure is in nats per data point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from entropy_elbo import entropies
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models.protocol import GaussianVAE
from entropy_elbo.montecarlo import sampled_terms

FIXED_NOTE = (
    "the decoder variance was never learned (fixed), so the entropy form (Thm. 1) does not hold: "
    "only the Monte Carlo ELBO at the stated variance applies"
)
UNITS = "nats per data point"


@dataclass
class Estimate:
    """Both ELBO estimators and the gap identity's figures for one model over one data set."""

    n: int
    d: int
    h: int
    decoder_variance: str
    entropy_elbo: float | None
    entropies: dict[str, float | None]
    mc_elbo: float | None
    mc_stderr: float | None
    mc_sampling_stderr: float | None
    mc_samples: int
    stationarity: dict[str, object]
    ppca_loglik: float | None = None
    note: str | None = None
    decoder_entropy_stderr: float | None = None
    units: str = UNITS
    extra: dict[str, object] = field(default_factory=dict)
    iwae: float | None = None  # importance-weighted bound on log p(x) (Burda et al. 2016), when asked for
    iwae_stderr: float | None = None  # its standard error over data points
    iwae_samples: int | None = None  # K importance samples per data point

    @property
    def relative_difference(self) -> float | None:
        """(MC ELBO - entropy ELBO) / |MC ELBO|."""
        if self.mc_elbo is None or self.entropy_elbo is None or self.mc_elbo == 0:
            return None
        return (self.mc_elbo - self.entropy_elbo) / abs(self.mc_elbo)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["relative_difference"] = self.relative_difference
        return out


def _batches_to_tensors(batches: Iterable[np.ndarray | Tensor], device: torch.device) -> Iterable[Tensor]:
    for b in batches:
        t = torch.as_tensor(b) if not isinstance(b, Tensor) else b
        yield t.to(device=device, dtype=torch.float32, non_blocking=True)


def _add(acc: dict[str, Tensor], key: str, value: Tensor) -> None:
    value = value.double()
    acc[key] = acc[key] + value if key in acc else value.clone()


@torch.inference_mode()
def accumulate(
    model: GaussianVAE,
    batches: Iterable[np.ndarray | Tensor],
    *,
    samples: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Tensor]:
    """Float64 sums over the data of every per-point quantity that `summarize` needs (mergeable by adding)."""
    device = torch.device(device)
    acc: dict[str, Tensor] = {}
    for x in _batches_to_tensors(batches, device):
        nu, log_tau2 = model.encode(x)  # (B, H) each
        nu, log_tau2 = nu.double(), log_tau2.double()
        _add(acc, "n", torch.tensor(float(x.shape[0]), device=device))
        _add(acc, "encoder_entropy", entropies.encoder_entropy(log_tau2).sum())
        _add(acc, "a", (nu.pow(2) + log_tau2.exp()).sum(0))  # (H,)
        kl = entropies.kl_to_prior(nu, log_tau2, model.prior_log_var)
        if getattr(model, "ppca", None) is not None:
            mu0 = model.ppca()[1].double()
            centered = x.double() - mu0
            _add(acc, "scatter", centered.T @ centered)
        if samples > 0:
            terms = sampled_terms(model, x, nu.float(), log_tau2.float(), samples, generator)
            f = terms.loglik - kl  # (B,) per-point MC ELBO
            _add(acc, "f", f.sum())
            _add(acc, "f_sq", f.pow(2).sum())
            _add(acc, "f_var_s", terms.loglik_var.sum())
            _add(acc, "r", terms.sq_ratio.flatten())
            _add(acc, "decoder_entropy", terms.decoder_entropy.sum())
            _add(acc, "decoder_entropy_sq", terms.decoder_entropy.pow(2).sum())
    if "n" not in acc:
        raise EntropyElboError("data: no rows to estimate over; pass a file with at least one data point")
    return acc


def summarize(model: GaussianVAE, acc: dict[str, Tensor], *, samples: int, d: int) -> Estimate:
    """Turn the float64 sums of `accumulate` into the estimate (Thm. 2 eq. 14; Thm. 3 eq. 22; eq. 76)."""
    n = int(acc["n"].item())
    h = model.latent_dim
    kind = model.decoder_variance
    prior_log_var = model.prior_log_var
    const_log_tau2 = model.encoder_log_var_constant
    if const_log_tau2 is not None:  # linear VAE: no data needed (Cor. 1, eq. 20)
        enc_ent = float(entropies.encoder_entropy(const_log_tau2.detach().double()))
    else:
        enc_ent = float(acc["encoder_entropy"]) / n
    prior_ent = entropies.prior_entropy(h, None if prior_log_var is None else prior_log_var.detach())
    a = acc["a"] / n
    if prior_log_var is not None:
        a = a / prior_log_var.detach().double().exp()

    dec_ent: float | None = None
    dec_ent_se: float | None = None
    sigma2: object = None
    if kind in ("scalar", "per-dim", "fixed"):
        log_sigma2 = model.decoder_log_var(torch.zeros(1, h, device=acc["n"].device)).detach().double().cpu()
        dec_ent = float(entropies.decoder_entropy(log_sigma2, d))
        sigma2 = log_sigma2.exp().tolist()
    elif samples > 0:
        dec_ent = float(acc["decoder_entropy"]) / n
        dec_ent_se = _stderr(acc["decoder_entropy"], acc["decoder_entropy_sq"], n)

    mc = mc_se = mc_sampling_se = None
    r_d: Tensor | None = None
    if samples > 0:
        mc = float(acc["f"]) / n
        mc_se = _stderr(acc["f"], acc["f_sq"], n)
        mc_sampling_se = math.sqrt(float(acc["f_var_s"]) / samples) / n if samples > 1 else None
        r_d = acc["r"].cpu() / n

    if kind == "fixed":
        f_h, note = None, FIXED_NOTE
    else:
        f_h = None if dec_ent is None else entropies.entropy_elbo(enc_ent, prior_ent, dec_ent)
        note = None if dec_ent is not None else "a variance network needs samples: pass --samples >= 1"

    stationarity: dict[str, object] = {"a": a.cpu().tolist()}
    if r_d is not None:
        r = float(r_d.mean())
        stationarity.update(r=r, gap=entropies.gap_to_elbo(r_d, a.cpu()))
        if kind == "per-dim":
            stationarity["r_per_dim"] = r_d.tolist()
            stationarity["sigma2_optimal"] = (torch.tensor(sigma2, dtype=torch.float64) * r_d).tolist()
        elif kind in ("scalar", "fixed"):
            stationarity["sigma2_optimal"] = float(np.asarray(sigma2).reshape(-1)[0]) * r
    if sigma2 is not None:
        stationarity["sigma2"] = sigma2

    ppca = None
    if getattr(model, "ppca", None) is not None and kind != "fixed":
        w, _, s2 = model.ppca()
        ppca = entropies.ppca_log_likelihood(w.detach().cpu(), float(s2.detach()), acc["scatter"].cpu() / n)

    return Estimate(
        n=n, d=d, h=h, decoder_variance=kind, entropy_elbo=f_h,
        entropies={"encoder": enc_ent, "prior": prior_ent, "decoder": dec_ent},
        mc_elbo=mc, mc_stderr=mc_se, mc_sampling_stderr=mc_sampling_se, mc_samples=samples,
        stationarity=stationarity, ppca_loglik=ppca, note=note, decoder_entropy_stderr=dec_ent_se,
    )


def _stderr(total: Tensor, total_sq: Tensor, n: int) -> float | None:
    """Standard error of a mean over n data points from float64 sums."""
    if n < 2:
        return None
    mean = float(total) / n
    var = max(0.0, (float(total_sq) - n * mean * mean) / (n - 1))
    return math.sqrt(var / n)


def estimate(
    model: GaussianVAE,
    batches: Iterable[np.ndarray | Tensor],
    *,
    samples: int = 100,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    d: int | None = None,
) -> Estimate:
    """Entropy ELBO and Monte Carlo ELBO (S samples) of `model` over `batches`, in nats per data point."""
    if samples < 0:
        raise EntropyElboError(f"--samples: got {samples}; pass 0 (no Monte Carlo) or a positive count")
    it = iter(batches)
    first = next(it, None)
    if first is None:
        raise EntropyElboError("data: no rows to estimate over; pass a file with at least one data point")
    dim = d if d is not None else int(np.prod(first.shape[1:]))

    def chained() -> Iterable[np.ndarray | Tensor]:
        yield first
        yield from it

    acc = accumulate(model, chained(), samples=samples, generator=generator, device=device)
    return summarize(model, acc, samples=samples, d=dim)


def with_iwae(est: Estimate, value: float, stderr: float | None, samples: int) -> Estimate:
    """The estimate with the importance-weighted bound (K samples) and its standard error added."""
    return replace(est, iwae=value, iwae_stderr=stderr, iwae_samples=samples)
