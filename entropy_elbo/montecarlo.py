"""Monte Carlo pieces of the ELBO (eq. 2): reparameterized samples z ~ q(z|x), decoder passes, float64 sums."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from entropy_elbo.entropies import (
    decoder_entropy,
    gaussian_log_likelihood,
    residual_log_likelihood,
)
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models.protocol import GaussianVAE

ELEMENTS_PER_BLOCK = 2**24  # at most this many decoder outputs (samples x rows x D) held at once
BLOCK_BYTES = 2**23  # a block's decoder outputs and activations: about the last-level cache (issue #24: 2-3x)


@dataclass
class SampledTerms:
    """Per-data-point Monte Carlo averages over S samples of one batch."""

    loglik: Tensor  # (B,) mean_s log N(x; mu(z_s), sigma^2(z_s))
    loglik_var: Tensor  # (B,) unbiased variance over the S samples (zeros when S == 1)
    sq_ratio: Tensor  # (D,) sum over the batch of mean_s (x - mu)^2 / sigma^2, per observed dimension
    decoder_entropy: Tensor  # (B,) mean_s sum_d 0.5 log(2 pi e sigma_d^2(z_s))
    decoder_entropy_var: Tensor  # (B,) its unbiased variance over the S samples (zeros when S == 1)


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 that holds it."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


_GAMMA = _signed(0x9E3779B97F4A7C15)  # SplitMix64's increment (Steele, Lea and Flood 2014)
_M1, _M2 = _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _mix64(x: Tensor) -> Tensor:
    """SplitMix64's output function on int64 tensors (wrapping products; logical right shifts by masking)."""
    x = (x ^ ((x >> 30) & ((1 << 34) - 1))).mul_(_M1)
    x.bitwise_xor_((x >> 27).bitwise_and_((1 << 37) - 1)).mul_(_M2)
    return x.bitwise_xor_((x >> 31).bitwise_and_((1 << 33) - 1))


@dataclass(frozen=True)
class RowSeed:
    """Counter-based draws: eps[s, row, h] is a function of (seed, stream, data row, sample s, latent h) alone.

    Each data row has its own SplitMix64 stream, so an estimate is the same for any batch size, any number
    of processes and any device memory. `stream` keeps the Monte Carlo ELBO, the IWAE bound and the sampled
    decoder entropy independent of each other.
    """

    seed: int
    stream: int = 0

    def normals(self, rows: Tensor, first_sample: int, samples: int, h: int, dtype: torch.dtype) -> Tensor:
        """Standard normal draws (S, B, H) for the data rows `rows` (B,) and samples first_sample...+S."""
        key = _mix64(torch.tensor(_signed(self.seed * _GAMMA + self.stream + 1), dtype=torch.int64,
                                  device=rows.device))
        row_key = _mix64(key + rows.to(torch.int64) * _GAMMA).reshape(1, -1, 1)  # (1, B, 1)
        counter = torch.arange(first_sample * h, (first_sample + samples) * h, dtype=torch.int64,
                               device=rows.device).reshape(samples, 1, h).add_(1).mul_(_GAMMA)  # (S, 1, H)
        out = torch.empty((samples, rows.shape[0], h), dtype=torch.float32, device=rows.device)  # (S, B, H)
        step = max(1, DRAWS_PER_CHUNK // max(1, rows.shape[0] * h))
        scratch = torch.empty((min(step, samples), rows.shape[0], h), dtype=torch.int64, device=rows.device)
        for start in range(0, samples, step):  # chunks that stay in the cache through every pass below
            stop = min(samples, start + step)
            _normals_into(torch.add(counter[start:stop], row_key), scratch[: stop - start], out[start:stop])
        return out.to(dtype)


DRAWS_PER_CHUNK = 2**15  # int64 work of 256 KiB: each of the ~10 passes over it reads the cache, not memory


def _normals_into(x: Tensor, scratch: Tensor, out: Tensor) -> None:
    """ndtri(uniform23(_mix64(x))) into the float32 `out`, `x` and `scratch` (int64, its shape) overwritten.

    Only bits 41..63 of _mix64 reach uniform23, and its last step (x ^ x >>> 31) leaves bits 33..63 as they are,
    so it is skipped; the other steps run in place. The same numbers, bit for bit (tests/test_row_streams.py).
    """
    torch.bitwise_right_shift(x, 30, out=scratch).bitwise_and_((1 << 34) - 1)
    x.bitwise_xor_(scratch).mul_(_M1)
    torch.bitwise_right_shift(x, 27, out=scratch).bitwise_and_((1 << 37) - 1)
    x.bitwise_xor_(scratch).mul_(_M2)
    torch.bitwise_right_shift(x, 41, out=scratch).bitwise_and_((1 << 23) - 1)  # k, the top 23 bits
    torch.mul(scratch, 2.0**-23, out=out).add_(2.0**-24)  # (k + 1/2) / 2^23, exact in float32 as in uniform23
    torch.special.ndtri(out, out=out)


def uniform23(bits: Tensor) -> Tensor:
    """Uniforms in (0, 1) from the top 23 of 64 random bits, (k + 1/2) / 2^23: exact in float32, so never 0 or 1
    (24 bits would round the largest up to 1.0, whose normal quantile is infinite); |ndtri| <= 5.3."""
    return (bits >> 41).bitwise_and_((1 << 23) - 1).float().add_(0.5).mul_(2.0**-23)


def sample_latents(nu: Tensor, log_tau2: Tensor, samples: int, generator: torch.Generator | RowSeed | None,
                   rows: Tensor | None = None, first_sample: int = 0) -> Tensor:
    """Reparameterized z = nu + tau * eps, eps ~ N(0, I): (B, H) -> (S, B, H).

    With a `RowSeed`, eps comes from each data row's own stream: `rows` (B,) are the rows' indices in the
    whole data set and `first_sample` the index of the first of these S samples.
    """
    if isinstance(generator, RowSeed):
        if rows is None:
            raise ValueError("sample_latents: a RowSeed needs the data rows' indices")
        eps = generator.normals(rows, first_sample, samples, nu.shape[-1], nu.dtype)
    else:
        eps = torch.randn((samples, *nu.shape), generator=generator, device=nu.device, dtype=nu.dtype)
    return nu + (0.5 * log_tau2).exp() * eps


def sampled_terms(
    model: GaussianVAE, x: Tensor, nu: Tensor, log_tau2: Tensor, samples: int,
    generator: torch.Generator | RowSeed | None, rows: Tensor | None = None,
    on_work: Callable[[int], None] | None = None,
) -> SampledTerms:
    """Decoder log-likelihood, residual ratios and decoder entropy averaged over S samples (eq. 2, eq. 22)."""
    b = x.shape[0]
    d = x[0].numel() if b else x.shape[1:].numel()  # (an empty batch: a rank with no rows)
    block = block_samples(model, samples, b, d)
    ll_sum = torch.zeros(b, dtype=torch.float64, device=x.device)
    ll_sq = torch.zeros_like(ll_sum)
    ent_sum = torch.zeros_like(ll_sum)
    ent_sq = torch.zeros_like(ll_sum)
    ratio = torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device)
    done = 0
    while done < samples:
        s = min(block, samples - done)
        z = sample_latents(nu, log_tau2, s, generator, rows, done)  # (s, B, H)
        mu, log_sigma2 = model.decode(z.reshape(s * b, nu.shape[-1]))
        log_sigma2 = log_sigma2.double()
        per_row = log_sigma2.dim() > 0 and log_sigma2.shape[0] == s * b  # a variance network
        if per_row:
            log_sigma2 = log_sigma2.reshape(s, b, *log_sigma2.shape[1:])
        # (x - mu)^2 / sigma^2 built in place in one float64 copy of mu: the block's largest buffer
        sq = mu.to(torch.float64, copy=True).reshape(s, *x.shape)  # (s, B, ...)
        sq.sub_(x).square_().mul_(log_sigma2.neg().exp_())
        ll = residual_log_likelihood(sq, log_sigma2, x.dim() - 1)  # (s, B)
        ll_sum += ll.sum(0)
        ll_sq += ll.pow(2).sum(0)
        ent = _decoder_entropies(log_sigma2, per_row, s, b, d)  # (s, B)
        ent_sum += ent.sum(0)
        ent_sq += ent.pow(2).sum(0)
        ratio += sq.sum((0, 1))
        done += s
        if on_work is not None:
            on_work(s * b)  # rows x samples done: progress within a batch, for a huge --samples
    return SampledTerms(ll_sum / samples, _sample_var(ll_sum, ll_sq, samples), ratio / samples, ent_sum / samples,
                        _sample_var(ent_sum, ent_sq, samples))


def _decoder_entropies(log_sigma2: Tensor, per_row: bool, s: int, b: int, d: int) -> Tensor:
    """sum_d 0.5 log(2 pi e sigma_d^2) per sample and row (eq. 22): (s, B), from a log sigma^2 of any shape."""
    if per_row:  # a variance network: (s, B, ...), one per sample and row
        return decoder_entropy(log_sigma2.reshape(s * b, *log_sigma2.shape[2:]), d).reshape(s, b)
    return decoder_entropy(log_sigma2, d).expand(s, b)


def block_samples(model: GaussianVAE, samples: int, rows: int, d: int) -> int:
    """Samples decoded at once: the block's decoder outputs (float32 mu, its float64 residuals) and activations
    (the model's layer widths) within BLOCK_BYTES, about the cache, and never over ELEMENTS_PER_BLOCK outputs."""
    widths = sum(p.shape[0] for p in model.parameters() if p.dim() >= 2) if isinstance(model, torch.nn.Module) else 0
    per_sample = max(1, rows) * (12 * d + 4 * widths)  # bytes per sample of the block
    return max(1, min(samples, BLOCK_BYTES // per_sample, ELEMENTS_PER_BLOCK // max(1, rows * d)))


def _sample_var(total: Tensor, sq: Tensor, samples: int) -> Tensor:
    """Unbiased variance over S samples from their sum and sum of squares (zeros when S == 1)."""
    return (sq - total.pow(2) / samples).clamp_min(0) / max(1, samples - 1)


# ---------------------------------------------------------------------------------------------- IWAE bound


@dataclass
class IWAEBound:
    """The importance-weighted bound on log p(x) per data point, with its standard error over data points."""

    value: float
    stderr: float | None
    samples: int  # K importance samples per data point
    n: int


def _diag_normal_log_prob(z: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """log N(z; mean, diag exp(log_var)) in float64, summed over the last dimension: (..., H) -> (...)."""
    z, mean, log_var = z.double(), mean.double(), log_var.double()
    return residual_log_likelihood((z - mean).pow(2) * (-log_var).exp(), log_var, 1)


def iwae_terms(
    model: GaussianVAE, x: Tensor, nu: Tensor, log_tau2: Tensor, samples: int,
    generator: torch.Generator | RowSeed | None, rows: Tensor | None = None,
    on_work: Callable[[int], None] | None = None,
) -> Tensor:
    """Per-point log (1/K) sum_k p(x, z_k)/q(z_k|x), z_k ~ q(z|x) (Burda et al. 2016), log-sum-exp in float64: (B,)."""
    b = x.shape[0]
    block = block_samples(model, samples, b, math.prod(x.shape[1:]))
    prior_log_var = model.prior_log_var
    prior_log_var = torch.zeros_like(nu) if prior_log_var is None else prior_log_var.detach().expand_as(nu)
    lse = torch.full((b,), -torch.inf, dtype=torch.float64, device=x.device)
    done = 0
    while done < samples:
        s = min(block, samples - done)
        z = sample_latents(nu, log_tau2, s, generator, rows, done)  # (s, B, H)
        mu, log_sigma2 = model.decode(z.reshape(s * b, -1))
        mu = mu.reshape(s, *x.shape)  # (s, B, ...)
        if log_sigma2.dim() > 0 and log_sigma2.shape[0] == s * b:
            log_sigma2 = log_sigma2.reshape(s, b, *log_sigma2.shape[1:])
        log_w = gaussian_log_likelihood(x, mu, log_sigma2)  # (s, B) log p(x|z), float64
        log_w += _diag_normal_log_prob(z, torch.zeros_like(nu), prior_log_var)  # + log p(z)
        log_w -= _diag_normal_log_prob(z, nu, log_tau2)  # - log q(z|x)
        lse = torch.logaddexp(lse, torch.logsumexp(log_w, 0))
        done += s
        if on_work is not None:
            on_work(s * b)
    return lse - math.log(samples)


@torch.inference_mode()
def iwae_bound(
    model: GaussianVAE,
    batches: Iterable[np.ndarray | Tensor],
    *,
    samples: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    seed: int | None = None,
    first_row: int = 0,
    on_work: Callable[[int], None] | None = None,
) -> IWAEBound:
    """IWAE bound ELBO <= E log (1/K) sum_k p(x, z_k)/q(z_k|x) <= log p(x), averaged over the data (nats per point).

    `seed` draws each row's samples from its own stream (`RowSeed`, stream 1): the same for any batching.
    """
    draws: torch.Generator | RowSeed | None = generator if seed is None else RowSeed(seed, stream=1)
    check_iwae(samples)
    return iwae_from_sums(iwae_sums(model, batches, samples=samples, draws=draws, device=torch.device(device),
                                    first_row=first_row, on_work=on_work), samples)


def check_iwae(samples: int) -> None:
    """K importance samples must be positive."""
    if samples < 1:
        raise EntropyElboError(f"--iwae: got {samples}; pass a positive number K of importance samples")


@torch.inference_mode()
def iwae_sums(model: GaussianVAE, batches: Iterable[np.ndarray | Tensor], *, samples: int,
              draws: torch.Generator | RowSeed | None, device: torch.device, first_row: int = 0,
              on_work: Callable[[int], None] | None = None) -> dict[str, Tensor]:
    """The float64 sums of the per-point IWAE terms, their squares and the row count (added over ranks as is)."""
    total = torch.zeros((), dtype=torch.float64, device=device)
    total_sq = torch.zeros_like(total)
    n = 0
    for batch in batches:
        x = torch.as_tensor(batch).to(device=device, dtype=torch.float32)
        if x.shape[0] == 0:
            continue
        nu, log_tau2 = model.encode(x)  # (B, H) each
        rows = torch.arange(first_row + n, first_row + n + x.shape[0], device=device)
        per_point = iwae_terms(model, x, nu, log_tau2, samples, draws, rows, on_work)  # (B,)
        total += per_point.sum()
        total_sq += per_point.pow(2).sum()
        n += x.shape[0]
    return {"iwae": total, "iwae_sq": total_sq, "iwae_n": torch.tensor(float(n), dtype=torch.float64, device=device)}


def iwae_from_sums(sums: dict[str, Tensor], samples: int) -> IWAEBound:
    """The bound and its standard error over data points from `iwae_sums` (nats per data point)."""
    n = int(sums["iwae_n"])
    if n == 0:
        raise EntropyElboError("data: no rows to estimate over; pass a file with at least one data point")
    total, total_sq = float(sums["iwae"]), float(sums["iwae_sq"])
    mean = total / n
    stderr = math.sqrt(max(0.0, (total_sq - n * mean * mean) / (n - 1)) / n) if n > 1 else None
    return IWAEBound(mean, stderr, samples, n)


def sampled_decoder_entropy(
    model: GaussianVAE, nu: Tensor, log_tau2: Tensor, d: int, samples: int, generator: torch.Generator | None
) -> Tensor:
    """Per-point E_q sum_d 0.5 log(2 pi e sigma_d^2(z)), running only the variance network (Thm. 3, eq. 22): (B,)."""
    z = sample_latents(nu, log_tau2, samples, generator)  # (S, B, H)
    log_sigma2 = model.decoder_log_var(z.reshape(-1, z.shape[-1])).double()  # (S*B, D...), (D,) or ()
    ent = decoder_entropy(log_sigma2, d)  # (S*B,) or ()
    if ent.dim() == 0:
        return ent.expand(nu.shape[0])
    return ent.reshape(samples, nu.shape[0]).mean(0)
