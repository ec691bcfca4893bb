"""Training the candidates on a stream: batches of a fixed size from chunks of any size, one Adam step per batch,
both BICs recorded per batch (Appendix A)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models import LinearVAE
from entropy_elbo.select.stacked import (
    bic_table,
    eps_moments,
    initial_models,
    linear_entropy_elbo,
    stack_models,
    stacked_elbo_and_grad,
    unstack_into,
)

PAPER_BATCH_SIZE, PAPER_LR, PAPER_SAMPLES = 10, 0.002, 100  # Appendix A


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
