"""One streaming pass over the data: entropy ELBO, Monte Carlo ELBO and the stationarity figures.

All sums are float64 and every figure is in nats per data point.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from entropy_elbo import entropies
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models.protocol import GaussianVAE, check_protocol, constant_log_sigma2
from entropy_elbo.montecarlo import RowSeed, sampled_terms
from entropy_elbo.pass_checks import check_encoder_output, check_finite_estimate, check_samples, plausible
from entropy_elbo.stationarity import stationarity_warnings

FIXED_NOTE = (
    "the decoder variance was never learned (fixed), so the entropy form (Thm. 1) does not hold: "
    "only the Monte Carlo ELBO at the stated variance applies"
)
UNITS = "nats per data point"
OTHER_UNITS = {  # the JSON figures that are not in nats per data point
    "relative_difference": "fraction of |mc_elbo| (the table shows it x100, in %)",
    "stationarity.r": "ratio (1 at a stationary point)", "stationarity.r_per_dim": "ratio per observed dimension",
    "stationarity.a": "ratio per latent (1 at a stationary point)",
    "stationarity.sigma2": "variance, in squared data units",
    "stationarity.sigma2_optimal": "variance, in squared data units",
    "n": "data points", "d": "values per data point", "h": "latents",
    "mc_samples": "samples per data point", "iwae_samples": "samples per data point",
}


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
    decoder_entropy_stderr: float | None = None  # VAE-3: spread of the per-point decoder entropy over data points
    entropy_elbo_sampling_stderr: float | None = None  # VAE-3: sampling noise of the entropy ELBO alone (eq. 22)
    units: str = UNITS
    extra: dict[str, object] = field(default_factory=dict)
    iwae: float | None = None  # importance-weighted bound on log p(x) (Burda et al. 2016), when asked for
    iwae_stderr: float | None = None  # its standard error over data points
    iwae_samples: int | None = None  # K importance samples per data point
    warnings: list[str] = field(default_factory=list)  # figures that cannot be trusted, and why (STATIONARY_TOL)
    assumptions: list[dict[str, str]] = field(default_factory=list)  # how a checkpoint from the wild was read

    @property
    def relative_difference(self) -> float | None:
        """(MC ELBO - entropy ELBO) / |MC ELBO|."""
        return entropies.relative_difference(self.mc_elbo, self.entropy_elbo)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["relative_difference"] = self.relative_difference
        out["other_units"] = {key: what for key, what in OTHER_UNITS.items() if _has(out, key)}
        return out


def _has(out: dict[str, object], dotted: str) -> bool:
    """Whether `out` holds the key path "a.b" (other_units lists only figures the object has)."""
    head, _, rest = dotted.partition(".")
    return head in out and (not rest or (isinstance(out[head], dict) and _has(out[head], rest)))


def _batches_to_tensors(batches: Iterable[np.ndarray | Tensor], device: torch.device) -> Iterable[Tensor]:
    for b in batches:
        if isinstance(b, Tensor) or b.flags.writeable:
            t = torch.as_tensor(b)
        else:  # a read-only memmap chunk, which we only read; torch warns once per process, so silence that once
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                t = torch.as_tensor(b)
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
    generator: torch.Generator | RowSeed | None = None,
    device: torch.device | str = "cpu",
    encodings: list[tuple[Tensor, Tensor]] | None = None,
    first_row: int = 0,
    on_work: Callable[[int], None] | None = None,
) -> dict[str, Tensor]:
    """Float64 sums over the data of every per-point quantity that `summarize` needs (mergeable by adding).

    With `encodings`, each batch's encoder outputs (nu, log tau^2) are appended to it, for `collapse` to reuse.
    With a `RowSeed` the samples of each row come from its own stream; `first_row` is the index of the
    first row of `batches` in the whole data set (a process's block under torchrun).
    """
    device = torch.device(device)
    acc: dict[str, Tensor] = {}
    rows = -1
    for x in _batches_to_tensors(batches, device):
        nu, log_tau2 = model.encode(x)  # (B, H) each, float32
        nu2, tau2, log_tau2_sum = _encoder_sums(nu, log_tau2)
        if not plausible(nu2, tau2, log_tau2_sum, log_tau2):  # only then searched for the first bad row
            check_encoder_output(nu, log_tau2, max(rows, 0), model)
        if encodings is not None:
            encodings.append((nu, log_tau2))
        rows = max(rows, 0) + x.shape[0]
        _add(acc, "encoder_entropy", 0.5 * (entropies.LOG_2PI_E * log_tau2.numel() + log_tau2_sum))  # eq. 8
        _add(acc, "a", nu2 + tau2)  # (H,)
        if getattr(model, "ppca", None) is not None:
            mu0 = model.ppca()[1].double()
            centered = x.double().flatten(1) - mu0  # (B, D)
            _add(acc, "scatter", centered.T @ centered)
        if samples == 0 and on_work is not None:
            on_work(x.shape[0])
        if samples > 0:  # the entropy ELBO needs nothing below: no KL, no decoder pass
            kl = entropies.kl_to_prior(nu.double(), log_tau2.double(), model.prior_log_var)
            index = torch.arange(first_row + rows - x.shape[0], first_row + rows, device=device)
            terms = sampled_terms(model, x, nu, log_tau2, samples, generator, index, on_work)
            f = terms.loglik - kl  # (B,) per-point MC ELBO
            _add(acc, "f", f.sum())
            _add(acc, "f_sq", f.pow(2).sum())
            _add(acc, "ll", terms.loglik.sum())  # with kl: the ELBO at any other scalar sigma^2 (at_variance)
            _add(acc, "ll_sq", terms.loglik.pow(2).sum())
            _add(acc, "ll_kl", (terms.loglik * kl).sum())
            _add(acc, "kl", kl.sum())
            _add(acc, "kl_sq", kl.pow(2).sum())
            _add(acc, "f_var_s", terms.loglik_var.sum())
            _add(acc, "r", terms.sq_ratio.flatten())
            _add(acc, "decoder_entropy", terms.decoder_entropy.sum())
            _add(acc, "decoder_entropy_sq", terms.decoder_entropy.pow(2).sum())
            _add(acc, "decoder_entropy_var_s", terms.decoder_entropy_var.sum())
    if rows < 0:
        raise EntropyElboError("data: no rows to estimate over; pass a file with at least one data point")
    acc["n"] = torch.tensor(float(rows), dtype=torch.float64, device=device)
    return acc


def _encoder_sums(nu: Tensor, log_tau2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A batch's float64 sums over rows of nu^2 and tau^2 per latent (a_h, eq. 76), and of all ln tau^2 (the
    encoder entropy is affine in it, eq. 8): one float64 copy of each output, the exponential taken in place."""
    log_tau2 = log_tau2.double()  # (B, H)
    log_tau2_sum = log_tau2.sum()
    return nu.double().square_().sum(0), log_tau2.exp_().sum(0), log_tau2_sum


def _sampling_stderr(var_sum: Tensor, samples: int, n: int) -> float | None:
    """Sampling noise alone of a mean over N points of S-sample means: sqrt(sum_n var_n / S) / N (None if S < 2)."""
    return math.sqrt(float(var_sum) / samples) / n if samples > 1 else None


def summarize(model: GaussianVAE, acc: dict[str, Tensor], *, samples: int, d: int) -> Estimate:
    """Turn the float64 sums of `accumulate` into the estimate (Thm. 2 eq. 14; Thm. 3 eq. 22; eq. 76)."""
    n = int(acc["n"].item())
    kind = model.decoder_variance
    ents, dec_ent_se, f_h_sampling_se, sigma2 = _entropies(model, acc, n=n, samples=samples, d=d)
    mc = mc_se = mc_sampling_se = None
    if samples > 0:
        mc = float(acc["f"]) / n
        mc_se = _stderr(acc["f"], acc["f_sq"], n)
        mc_sampling_se = _sampling_stderr(acc["f_var_s"], samples, n)
    if kind == "fixed":
        f_h, note = None, FIXED_NOTE
    else:
        f_h = None if ents["decoder"] is None else entropies.entropy_elbo(*ents.values())
        note = None if ents["decoder"] is not None else ("a decoder variance network needs samples for its entropy: "
                                                         "samples >= 1 (--samples 1 or more)")
    ppca = None
    if getattr(model, "ppca", None) is not None and kind != "fixed":
        w, _, s2 = model.ppca()
        ppca = entropies.ppca_log_likelihood(w.detach().cpu(), float(s2.detach()), acc["scatter"].cpu() / n)
    est = Estimate(
        n=n, d=d, h=model.latent_dim, decoder_variance=kind, entropy_elbo=f_h, entropies=ents,
        mc_elbo=mc, mc_stderr=mc_se, mc_sampling_stderr=mc_sampling_se, mc_samples=samples,
        stationarity=_stationarity(model, acc, n=n, samples=samples, d=d, sigma2=sigma2), ppca_loglik=ppca,
        note=note, decoder_entropy_stderr=dec_ent_se, entropy_elbo_sampling_stderr=f_h_sampling_se,
    )
    est.warnings = stationarity_warnings(est)
    return est


def _entropies(model: GaussianVAE, acc: dict[str, Tensor], *, n: int, samples: int,
               d: int) -> tuple[dict[str, float | None], float | None, float | None, object]:
    """The three entropies (eq. 14; the decoder's sampled for a variance network, eq. 22), the decoder entropy's
    spread and sampling errors, and a constant sigma^2 (None for a network)."""
    h = model.latent_dim
    const_log_tau2 = model.encoder_log_var_constant
    if const_log_tau2 is not None:  # linear VAE: no data needed (Cor. 1, eq. 20)
        enc_ent = float(entropies.encoder_entropy(const_log_tau2.detach().double()))
    else:
        enc_ent = float(acc["encoder_entropy"]) / n
    prior_log_var = model.prior_log_var
    prior_ent = entropies.prior_entropy(h, None if prior_log_var is None else prior_log_var.detach())
    dec_ent = dec_ent_se = f_h_sampling_se = sigma2 = None
    if model.decoder_variance in ("scalar", "per-dim", "fixed"):
        log_sigma2 = constant_log_sigma2(model)
        dec_ent = float(entropies.decoder_entropy(log_sigma2, d))
        sigma2 = log_sigma2.exp().tolist()
    elif samples > 0:
        dec_ent = float(acc["decoder_entropy"]) / n
        dec_ent_se = _stderr(acc["decoder_entropy"], acc["decoder_entropy_sq"], n)
        f_h_sampling_se = _sampling_stderr(acc["decoder_entropy_var_s"], samples, n)
    return {"encoder": enc_ent, "prior": prior_ent, "decoder": dec_ent}, dec_ent_se, f_h_sampling_se, sigma2


def _stationarity(model: GaussianVAE, acc: dict[str, Tensor], *, n: int, samples: int, d: int,
                  sigma2: object) -> dict[str, object]:
    """a_h (eq. 76, over the prior's variances for VAE-2), r and the gap identity's terms, sigma^2 and sigma*^2 =
    sigma^2 r, and for a scalar sigma^2 the Monte Carlo ELBO at sigma*^2 from the same samples."""
    kind, prior_log_var = model.decoder_variance, model.prior_log_var
    a = acc["a"] / n
    if prior_log_var is not None:
        a = a / prior_log_var.detach().double().exp()
    stationarity: dict[str, object] = {"a": a.cpu().tolist()}
    if samples > 0:
        r_d = acc["r"].cpu() / n
        r = float(r_d.mean())
        stationarity["r"] = r
        if kind != "fixed":  # the gap is to the entropy ELBO, which a fixed sigma^2 does not have
            stationarity["gap"] = entropies.gap_to_elbo(r_d, a.cpu())
        if kind == "per-dim":
            stationarity["r_per_dim"] = r_d.tolist()
            stationarity["sigma2_optimal"] = (torch.tensor(sigma2, dtype=torch.float64) * r_d).tolist()
        elif kind in ("scalar", "fixed"):
            s2 = float(np.asarray(sigma2).reshape(-1)[0])
            stationarity["sigma2_optimal"] = s2 * r
            if "ll" in acc and np.size(sigma2) == 1:
                at = at_variance(acc, n=n, d=d, samples=samples, sigma2=s2, new_sigma2=s2 * r)
                stationarity["mc_elbo_at_sigma2_optimal"], stationarity["mc_stderr_at_sigma2_optimal"] = at[:2]
                stationarity["mc_sampling_stderr_at_sigma2_optimal"] = at[2]
    if sigma2 is not None:
        stationarity["sigma2"] = sigma2
    return stationarity


def at_variance(acc: dict[str, Tensor], *, n: int, d: int, samples: int, sigma2: float,
                new_sigma2: float) -> tuple[float, float | None, float | None]:
    """MC ELBO (eq. 2), its standard error and sampling error had the scalar decoder variance been `new_sigma2`,
    from the sums of one pass at `sigma2`: per point, mean_s log N(x; mu, s'^2) = -D/2 log(2 pi s'^2)
    + (s^2/s'^2) (ll_n + D/2 log(2 pi s^2)), so the same samples give the ELBO at any s'^2 in closed form."""
    ratio = sigma2 / new_sigma2
    shift = 0.5 * d * (entropies.LOG_2PI + math.log(sigma2))  # u_n = ll_n + shift = -E||x - mu||^2 / (2 s^2)
    ll, kl = float(acc["ll"]) / n, float(acc["kl"]) / n
    value = -0.5 * d * (entropies.LOG_2PI + math.log(new_sigma2)) + ratio * (ll + shift) - kl
    stderr = None
    if n > 1:
        var_ll = (float(acc["ll_sq"]) - n * ll * ll) / (n - 1)
        var_kl = (float(acc["kl_sq"]) - n * kl * kl) / (n - 1)
        cov = (float(acc["ll_kl"]) - n * ll * kl) / (n - 1)
        stderr = math.sqrt(max(0.0, ratio**2 * var_ll + var_kl - 2 * ratio * cov) / n)
    sampling = None if samples < 2 else ratio * _sampling_stderr(acc["f_var_s"], samples, n)
    return value, stderr, sampling


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
    seed: int | None = None,
    on_work: Callable[[int], None] | None = None,
) -> Estimate:
    """Entropy ELBO and Monte Carlo ELBO (S samples) of `model` over `batches`, in nats per data point.

    `seed` draws each data row's samples from its own stream (`RowSeed`): the same number for any batch size
    and any number of processes; `generator` instead draws them in order from one torch generator.
    """
    check_samples(samples)
    check_protocol(model)
    it = iter(batches)
    first = next(it, None)
    if first is None:
        raise EntropyElboError("data: no rows to estimate over; pass a file with at least one data point")
    dim = d if d is not None else int(np.prod(first.shape[1:]))

    def chained() -> Iterable[np.ndarray | Tensor]:
        yield first
        yield from it

    draws = generator if seed is None else RowSeed(seed)
    acc = accumulate(model, chained(), samples=samples, generator=draws, device=device, on_work=on_work)
    return check_finite_estimate(summarize(model, acc, samples=samples, d=dim))


def entropy_elbo_without_data(model: GaussianVAE, d: int) -> float | None:
    """Entropy ELBO from the parameters alone (Cor. 1, eq. 20), when the encoder and decoder variances do not
    depend on x or z (linear VAE, learned scalar or per-dim sigma^2): its cost does not grow with N. None
    for any other model, which needs the pass of `estimate`."""
    est = estimate_without_data(model, d)
    return None if est is None else est.entropy_elbo


def estimate_without_data(model: GaussianVAE, d: int) -> Estimate | None:
    """The entropy ELBO and its three entropies from the parameters alone (Cor. 1, eq. 20; `--samples 0` with
    no `--data`); None when a variance depends on x or z. No data: no n, no Monte Carlo, no a_h or r."""
    const_log_tau2 = model.encoder_log_var_constant
    if const_log_tau2 is None or model.decoder_variance not in ("scalar", "per-dim"):
        return None
    h = model.latent_dim
    with torch.inference_mode():
        enc_ent = float(entropies.encoder_entropy(const_log_tau2.detach().double()))
        prior_log_var = model.prior_log_var
        prior_ent = entropies.prior_entropy(h, None if prior_log_var is None else prior_log_var.detach())
        log_sigma2 = constant_log_sigma2(model)
        dec_ent = float(entropies.decoder_entropy(log_sigma2, d))
    return Estimate(n=0, d=d, h=h, decoder_variance=model.decoder_variance,
                    entropy_elbo=entropies.entropy_elbo(enc_ent, prior_ent, dec_ent),
                    entropies={"encoder": enc_ent, "prior": prior_ent, "decoder": dec_ent}, mc_elbo=None,
                    mc_stderr=None, mc_sampling_stderr=None, mc_samples=0,
                    stationarity={"sigma2": log_sigma2.exp().tolist()},
                    note="from the parameters alone (Cor. 1, eq. 20): no data (--data), so no a_h, r or Monte Carlo "
                         "ELBO")


def with_iwae(est: Estimate, value: float, stderr: float | None, samples: int) -> Estimate:
    """The estimate with the importance-weighted bound (K samples) and its standard error added."""
    return replace(est, iwae=value, iwae_stderr=stderr, iwae_samples=samples)
