"""Streaming model selection for linear VAEs by BIC (Appendix A, Fig. 3a; Corollary 1, eq. 20).

One linear VAE (eq. 18/19) per candidate latent count H trains on a stream of data, one Adam step per
batch of `batch_size` rows, with the sampled ELBO (eq. 2, `samples` reparameterized samples per row). For
every batch two BICs are recorded (eq. 27), both at the parameters the batch is evaluated at (just before
its Adam step):

  BIC = -2 * n * F + P * log(n),   P = H * D + 1   (elements of W plus the noise variance, Appendix A)

- entropy BIC: F from Corollary 1 (eq. 20), 0.5 * sum_h log tau_h^2 - (D/2) log(2 pi e sigma^2): the variance
  parameters alone, no data, no sampling;
- sampled BIC: F the sampled ELBO of that batch, the training objective's own value (the paper's "online ELBO
  estimate"), noisy through both the batch and the samples.

n is the number of rows of the batch the BIC is recorded for (10 in the paper's Appendix A, whose code
evaluates the three-entropies bound with N the batch size); a short last batch uses its own row count.

The candidates train as one stacked model: their parameters are padded to the largest H and masked, and
one Adam optimizer steps them all. Adam acts element-wise and the masked entries get zero gradients, so
this is the same computation as one LinearVAE and one Adam per candidate (the tests check this step for
step), but one set of tensor operations per batch instead of one per candidate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from entropy_elbo import entropies
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models import LinearVAE, ModelConfig, build_model

PAPER_BATCH_SIZE, PAPER_LR, PAPER_SAMPLES = 10, 0.002, 100  # Appendix A
DEFAULT_TAIL = 1000  # batches at the end of a segment that its summary covers
DEFAULT_WINDOW = 1000  # batches per segment when the stream has no known phases
STATIONARY_TOLERANCE = 0.1  # nats per point: sampled and entropy ELBO further apart (+3 SE) flag a model in motion


# ---------------------------------------------------------------------------------------------- formulas


def n_params(h: int, d: int) -> int:
    """Point-estimated parameters of a linear VAE for the BIC: the elements of W plus sigma^2 (App. A)."""
    return h * d + 1


def linear_entropy_elbo(log_tau2: Tensor, log_sigma2: Tensor, d: int) -> Tensor:
    """Entropy ELBO of linear VAEs from their variances alone (Cor. 1, eq. 20): (..., H), (...) -> (...).

    Latents padded with log tau^2 = 0 add the prior's entropy to the encoder's, so they cancel exactly.
    """
    h = log_tau2.shape[-1]
    return entropies.encoder_entropy(log_tau2) - entropies.prior_entropy(h) - d * entropies.gaussian_entropy(log_sigma2)


def bic_table(elbo: np.ndarray, rows: np.ndarray, latents: Sequence[int], d: int) -> np.ndarray:
    """BIC = -2 n F + P log n (eq. 27) for per-point ELBOs (T, K) of batches with `rows` (T,) rows each."""
    n = rows.astype(np.float64)[:, None]  # (T, 1)
    p = np.array([n_params(h, d) for h in latents], dtype=np.float64)[None, :]  # (1, K)
    return -2.0 * n * elbo + p * np.log(n)


# ---------------------------------------------------------------------------------------------- stacked models


def initial_models(latents: Sequence[int], d: int, seed: int, init_log_sigma2: float = 0.0) -> list[LinearVAE]:
    """One fresh LinearVAE per candidate H, seeded in order, without touching the global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [build_model(ModelConfig(kind="linear", data_dim=d, latent_dim=h, init_log_sigma2=init_log_sigma2))
                for h in latents]


def stack_models(models: Sequence[LinearVAE], device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
    """The candidates' parameters padded to the largest H: mu0 (K, D), V (K, H, D), W (K, D, H), log_tau2 (K, H),
    log_sigma2 (K,), and the mask (K, H) of real latents."""
    k, d = len(models), models[0].config.data_dim
    hmax = max(m.latent_dim for m in models)
    out = {"mu0": torch.zeros(k, d), "V": torch.zeros(k, hmax, d), "W": torch.zeros(k, d, hmax),
           "log_tau2": torch.zeros(k, hmax), "log_sigma2": torch.zeros(k), "mask": torch.zeros(k, hmax)}
    with torch.no_grad():
        for i, m in enumerate(models):
            h = m.latent_dim
            out["mu0"][i] = m.mu0
            out["V"][i, :h] = m.V
            out["W"][i, :, :h] = m.W
            out["log_tau2"][i, :h] = m.log_tau2
            out["log_sigma2"][i] = m.log_sigma2
            out["mask"][i, :h] = 1.0
    return {name: t.to(device=device, dtype=dtype) for name, t in out.items()}


def unstack_into(models: Sequence[LinearVAE], params: dict[str, Tensor]) -> None:
    """Copy the stacked parameters back into the candidates' LinearVAEs (float32, CPU)."""
    with torch.no_grad():
        for i, m in enumerate(models):
            h = m.latent_dim
            m.mu0.copy_(params["mu0"][i].cpu())
            m.V.copy_(params["V"][i, :h].cpu())
            m.W.copy_(params["W"][i, :, :h].cpu())
            m.log_tau2.copy_(params["log_tau2"][i, :h].cpu())
            m.log_sigma2.copy_(params["log_sigma2"][i].cpu())


def eps_moments(eps: Tensor) -> tuple[Tensor, Tensor]:
    """First and second moments over S samples of eps (K, S, B, H): (K, B, H) and (K, B, H, H)."""
    s = eps.shape[1]
    return eps.mean(1), torch.einsum("ksbh,ksbg->kbhg", eps, eps) / s


def stacked_elbo_and_grad(p: dict[str, Tensor], mask: Tensor, x: Tensor, m1: Tensor,
                          m2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Sampled ELBO per point (eq. 2) of K stacked linear VAEs on one batch x (B, D), (K,), and its gradients.

    The samples z_s = nu + T eps_s (T = diag tau) enter through the moments m1, m2 of eps (`eps_moments`): for
    a linear decoder mean_s ||x - mu0 - W z_s||^2 = ||r||^2 - 2 r^T A m1 + tr(A m2 A^T) with r = x - mu0 - W nu
    and A = W T, the same value as the sample average without a decoder pass per sample. The gradients are
    this expression's, by hand (the tests check them against autograd on LinearVAE); padded latents get none.
    """
    v, w, log_tau2 = p["V"] * mask[:, :, None], p["W"] * mask[:, None, :], p["log_tau2"] * mask  # masked
    d, b = x.shape[-1], x.shape[0]
    xc = x - p["mu0"][:, None, :]  # (K, B, D)
    nu = torch.bmm(xc, v.transpose(1, 2))  # (K, B, H)
    tau2 = log_tau2.exp()  # (K, H)
    tau = tau2.sqrt()
    a = w * tau[:, None, :]  # (K, D, H): W T
    r = xc - torch.bmm(nu, w.transpose(1, 2))  # (K, B, D)
    u = torch.bmm(m1, a.transpose(1, 2))  # (K, B, D): A m1
    am2 = torch.matmul(a[:, None], m2)  # (K, B, D, H): A m2
    sq = r.pow(2).sum(-1) - 2 * (r * u).sum(-1) + (am2 * a[:, None]).sum((-2, -1))  # (K, B)
    log_sigma2 = p["log_sigma2"]  # (K,)
    lam = (-log_sigma2).exp()[:, None]  # (K, 1): 1 / sigma^2
    loglik = -0.5 * (d * (entropies.LOG_2PI + log_sigma2)[:, None] + sq * lam)  # (K, B)
    kl = 0.5 * (nu.pow(2) + tau2[:, None] - log_tau2[:, None] - 1).sum(-1)  # (K, B)
    f = (loglik - kl).mean(-1)  # (K,)
    # gradients of f, averaged over the batch; lam3 broadcasts 1/sigma^2 over (K, B, .)
    lam3 = lam[:, :, None]
    e = r - u  # (K, B, D): half the gradient of sq with respect to r
    g_nu = lam3 * torch.bmm(e, w) - nu  # (K, B, H)
    g_xc = -lam3 * e + torch.bmm(g_nu, v)  # (K, B, D)
    g_a = lam3 * (torch.bmm(r.transpose(1, 2), m1) - am2.sum(1)) / b  # (K, D, H)
    grads = {
        "mu0": -g_xc.mean(1),
        "V": torch.bmm(g_nu.transpose(1, 2), xc) / b * mask[:, :, None],
        "W": (lam3 * torch.bmm(e.transpose(1, 2), nu) / b + g_a * tau[:, None, :]) * mask[:, None, :],
        "log_tau2": (0.5 * tau * (g_a * w).sum(1) - 0.5 * (tau2 - 1)) * mask,
        "log_sigma2": -0.5 * d + 0.5 * (lam * sq).mean(-1),
    }
    return f, grads


# ---------------------------------------------------------------------------------------------- the stream


def rebatch(chunks: Iterable[np.ndarray], batch_size: int, device: torch.device,
            dtype: torch.dtype) -> Iterator[Tensor]:
    """Batches of exactly batch_size rows (the last may be shorter) from chunks of any size, in order."""
    rest: Tensor | None = None
    d: int | None = None
    for i, chunk in enumerate(chunks):
        chunk = np.asarray(chunk)
        if chunk.ndim < 2 or len(chunk) == 0:
            if chunk.ndim >= 1 and len(chunk) == 0:
                continue
            raise EntropyElboError(f"stream chunk {i}: shape {chunk.shape}; every chunk must be (rows, D)")
        chunk = chunk.reshape(len(chunk), -1)
        if d is None:
            d = chunk.shape[1]
        if chunk.shape[1] != d:
            raise EntropyElboError(f"stream chunk {i}: rows have {chunk.shape[1]} values, earlier chunks {d}")
        if not np.isfinite(chunk).all():
            row = int(np.argmax(~np.isfinite(chunk).all(axis=1)))
            raise EntropyElboError(f"stream chunk {i}: row {row} holds NaN or Inf; clean the data first")
        x = torch.tensor(chunk, device=device, dtype=dtype)  # a copy: memmap chunks are read-only
        if rest is not None:
            x = torch.cat([rest, x])
        full = len(x) // batch_size * batch_size
        if full:
            yield from x[:full].split(batch_size)
        rest = x[full:] if full < len(x) else None
    if rest is not None:
        yield rest


@dataclass
class StreamSelection:
    """Per-batch record of streaming training: ELBOs and BICs (T, K) for candidates `latents`, T batches."""

    latents: tuple[int, ...]
    d: int
    rows: np.ndarray  # (T,) rows in each batch: the n of its BIC
    start: np.ndarray  # (T,) index in the stream of each batch's first row
    elbo_entropy: np.ndarray  # (T, K) Cor. 1, eq. 20, nats per point
    elbo_sampled: np.ndarray  # (T, K) sampled ELBO of the batch (eq. 2), nats per point
    settings: dict[str, object] = field(default_factory=dict)
    models: list[LinearVAE] = field(default_factory=list)  # the candidates after the last batch

    @property
    def bic_entropy(self) -> np.ndarray:
        """Entropy BIC (T, K): -2 n F_H + P log n with F_H from eq. 20."""
        return bic_table(self.elbo_entropy, self.rows, self.latents, self.d)

    @property
    def bic_sampled(self) -> np.ndarray:
        """Sampled BIC (T, K): -2 n F + P log n with F the batch's sampled ELBO."""
        return bic_table(self.elbo_sampled, self.rows, self.latents, self.d)


def adam(params: list[Tensor], lr: float) -> torch.optim.Adam:
    """One Adam over all stacked parameters: the fused kernel where this torch has it (one call per step)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without a fused Adam
        return torch.optim.Adam(params, lr=lr)


def _check_settings(latents: Sequence[int], batch_size: int, lr: float, samples: int) -> tuple[int, ...]:
    """Refuse settings that cannot run; returns the candidates as a tuple."""
    latents = tuple(int(h) for h in latents)
    if not latents or min(latents) < 1 or len(set(latents)) != len(latents):
        raise EntropyElboError(f"latents (--latents): got {latents}; give distinct positive latent counts, e.g. 2,4,6")
    if batch_size < 1:
        raise EntropyElboError(f"batch_size (--batch-size): got {batch_size}; pass a positive count")
    if samples < 1:
        raise EntropyElboError(f"samples (--samples): got {samples}; pass a positive count")
    if not (lr > 0 and math.isfinite(lr)):
        raise EntropyElboError(f"lr (--lr): got {lr}; pass a positive number")
    return latents


def select_stream(
    chunks: Iterable[np.ndarray],
    latents: Sequence[int],
    *,
    batch_size: int = PAPER_BATCH_SIZE,
    lr: float = PAPER_LR,
    samples: int = PAPER_SAMPLES,
    seed: int = 0,
    init_log_sigma2: float = 0.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    on_rows: Callable[[int], None] | None = None,
) -> StreamSelection:
    """Train one linear VAE per H in `latents` on a stream, one Adam step per batch; record both BICs per batch.

    `chunks` yields arrays (rows, D) of any size in stream order (a memory-mapped file read chunk by chunk, or
    a live source); they are cut into batches of `batch_size` rows. mu0 starts at the first batch's mean.
    """
    latents = _check_settings(latents, batch_size, lr, samples)
    device = torch.device(device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # tensors of a few hundred elements: extra threads only add contention
    try:
        return _train_stream(chunks, latents, batch_size, lr, samples, seed, init_log_sigma2, device, dtype, on_rows)
    finally:
        torch.set_num_threads(threads)


def _train_stream(chunks: Iterable[np.ndarray], latents: tuple[int, ...], batch_size: int, lr: float, samples: int,
                  seed: int, init_log_sigma2: float, device: torch.device, dtype: torch.dtype,
                  on_rows: Callable[[int], None] | None) -> StreamSelection:
    """The training loop of select_stream."""
    gen = torch.Generator(device=device).manual_seed(seed)
    models: list[LinearVAE] = []
    p: dict[str, Tensor] = {}
    opt: torch.optim.Adam | None = None
    rows_list, ent_list, smp_list = [], [], []
    seen = 0
    for x in rebatch(chunks, batch_size, device, dtype):
        if opt is None:
            models = initial_models(latents, x.shape[1], seed, init_log_sigma2)
            p = stack_models(models, device, dtype)
            p["mu0"][:] = x.mean(0)
            mask = p.pop("mask")
            opt = adam(list(p.values()), lr)
        eps = torch.randn((len(latents), samples, x.shape[0], mask.shape[1]), generator=gen, device=device,
                          dtype=dtype)  # (K, S, B, H)
        f, grads = stacked_elbo_and_grad(p, mask, x, *eps_moments(eps))  # (K,), gradients of f
        ent_list.append(linear_entropy_elbo(p["log_tau2"] * mask, p["log_sigma2"], x.shape[1]))
        smp_list.append(f)
        for name, t in p.items():
            t.grad = grads[name].neg_()  # Adam minimizes -f
        opt.step()
        rows_list.append(len(x))
        seen += len(x)
        if on_rows is not None and len(rows_list) % 1000 == 0:
            on_rows(seen)
    if opt is None:
        raise EntropyElboError("stream: no rows to train on; pass a non-empty data file or source")
    unstack_into(models, {k: t.detach() for k, t in p.items()})
    if on_rows is not None:
        on_rows(seen)
    rows = np.asarray(rows_list, dtype=np.int64)
    elbo_entropy = torch.stack(ent_list).double().cpu().numpy()
    elbo_sampled = torch.stack(smp_list).double().cpu().numpy()
    bad = ~np.isfinite(elbo_sampled).all(axis=1) | ~np.isfinite(elbo_entropy).all(axis=1)
    if bad.any():
        raise EntropyElboError(f"training diverged at batch {int(np.argmax(bad))}: an ELBO is not finite; "
                               "lower --lr or standardize the data")
    settings = {"batch_size": batch_size, "lr": lr, "samples": samples, "seed": seed,
                "init_log_sigma2": init_log_sigma2, "optimizer": "Adam, one step per batch"}
    return StreamSelection(latents, int(models[0].config.data_dim), rows, np.cumsum(rows) - rows, elbo_entropy,
                           elbo_sampled, settings, models)


# ---------------------------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Segment:
    """Rows [start, stop) of the stream, summarized together; true_dim when known (a synthetic phase)."""

    name: str
    start: int
    stop: int
    true_dim: int | None = None


def phase_segments(lengths: Sequence[int], true_dims: Sequence[int] | None = None) -> list[Segment]:
    """Consecutive phases of the given row counts, with their true intrinsic dimensions if known."""
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
    dims = list(true_dims) if true_dims is not None else [None] * len(lengths)
    return [Segment(f"phase {i + 1}", int(bounds[i]), int(bounds[i + 1]), dims[i]) for i in range(len(lengths))]


def window_segments(sel: StreamSelection, window: int) -> list[Segment]:
    """Consecutive windows of `window` batches (the last may be shorter), for a stream without known phases."""
    if window < 1:
        raise EntropyElboError(f"--window: got {window}; it must be >= 1 batch")
    t = len(sel.rows)
    stops = np.append(sel.start, sel.start[-1] + sel.rows[-1])
    return [Segment(f"window {i // window + 1}", int(stops[i]), int(stops[min(i + window, t)]))
            for i in range(0, t, window)]


@dataclass(frozen=True)
class MethodSummary:
    """One BIC's verdict over a segment's tail: mean and std per candidate, the pick, how often batches agree."""

    mean: np.ndarray  # (K,)
    std: np.ndarray  # (K,) over the tail's batches, ddof=1
    selected: int  # the H with the lowest mean BIC
    agreement: float  # share of the tail's batches whose own lowest BIC is `selected`


@dataclass(frozen=True)
class SegmentSummary:
    segment: Segment
    batches: int  # batches whose first row lies in the segment
    tail: int  # the last `tail` of them are summarized
    entropy: MethodSummary
    sampled: MethodSummary
    elbo_gap: np.ndarray  # (K,) mean sampled ELBO - mean entropy ELBO over the tail, nats per point
    elbo_gap_se: np.ndarray  # (K,) its standard error (over the tail's batches)

    @property
    def near_stationary(self) -> np.ndarray:
        """(K,) whether the two ELBOs agree within STATIONARY_TOLERANCE + 3 SE: eq. 20 holds at stationary points."""
        return np.abs(self.elbo_gap) <= STATIONARY_TOLERANCE + 3 * self.elbo_gap_se

    def to_dict(self, latents: Sequence[int]) -> dict[str, object]:
        def method(m: MethodSummary) -> dict[str, object]:
            return {"selected": m.selected, "agreement": m.agreement,
                    "mean": dict(zip(map(str, latents), m.mean.tolist(), strict=True)),
                    "std": dict(zip(map(str, latents), m.std.tolist(), strict=True))}

        s = self.segment
        ratio = self.sampled.std / np.maximum(self.entropy.std, np.finfo(float).tiny)
        return {"name": s.name, "start_row": s.start, "stop_row": s.stop, "true_dim": s.true_dim,
                "batches": self.batches, "tail_batches": self.tail, "entropy_bic": method(self.entropy),
                "sampled_bic": method(self.sampled),
                "std_ratio": dict(zip(map(str, latents), ratio.tolist(), strict=True)),
                "elbo_gap": dict(zip(map(str, latents), self.elbo_gap.tolist(), strict=True)),
                "near_stationary": dict(zip(map(str, latents), self.near_stationary.tolist(), strict=True))}


def _method_summary(bic: np.ndarray, latents: Sequence[int]) -> MethodSummary:
    """Mean and std over batches (T, K) of one BIC, its pick, and the share of batches picking the same."""
    mean = bic.mean(0)
    std = bic.std(0, ddof=1) if len(bic) > 1 else np.zeros(bic.shape[1])
    best = int(np.argmin(mean))
    return MethodSummary(mean, std, int(latents[best]), float(np.mean(bic.argmin(1) == best)))


def summarize(sel: StreamSelection, segments: Sequence[Segment], tail: int = DEFAULT_TAIL) -> list[SegmentSummary]:
    """Per segment, over its last min(tail, half its batches) batches: each BIC's mean, std and selected H.

    A batch belongs to the segment holding its first row; the tail skips the transient after a change.
    """
    if tail < 1:
        raise EntropyElboError(f"--tail: got {tail}; it must be >= 1 batch")
    total = int(sel.start[-1] + sel.rows[-1])
    if segments and segments[-1].stop != total:
        raise EntropyElboError(f"--phases: they cover {segments[-1].stop} rows but the stream has {total}; "
                               "make the phase lengths add up to the number of rows")
    ent, smp = sel.bic_entropy, sel.bic_sampled
    out = []
    for seg in segments:
        idx = np.flatnonzero((sel.start >= seg.start) & (sel.start < seg.stop))
        if len(idx) == 0:
            raise EntropyElboError(f"{seg.name} (rows {seg.start}-{seg.stop}) holds no batch; use longer phases")
        keep = idx[-max(1, min(tail, len(idx) // 2)):]
        gap = sel.elbo_sampled[keep] - sel.elbo_entropy[keep]  # (tail, K)
        se = gap.std(0, ddof=1) / np.sqrt(len(keep)) if len(keep) > 1 else np.full(gap.shape[1], np.inf)
        out.append(SegmentSummary(seg, len(idx), len(keep), _method_summary(ent[keep], sel.latents),
                                  _method_summary(smp[keep], sel.latents), gap.mean(0), se))
    return out
