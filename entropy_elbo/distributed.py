"""Many processes, one result: torch.distributed over the rows of the data (torchrun launches the processes).

Every rank streams its own contiguous block of rows through `estimate.accumulate` (or collapse's streaming
statistics); the float64 sums that come out are added across ranks, so the result is the one-process one.
Training wraps the step in DistributedDataParallel over equal blocks of rows and adds each epoch's float64
sums over the ranks; rank 0 alone writes. gloo on CPU, NCCL on CUDA. Monte Carlo samples differ across ranks
(seed + rank).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from entropy_elbo.data import iter_batches
from entropy_elbo.elbo import Estimate, accumulate, summarize
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.latents import (
    ACTIVE_THRESHOLD,
    LUCAS_DELTA,
    LUCAS_EPSILON,
    CollapseResult,
    CollapseSums,
    check_settings,
    encoder_outputs,
    merge_sums,
    stream_sums,
    summarize_collapse,
)
from entropy_elbo.models.protocol import GaussianVAE, VAEBase
from entropy_elbo.montecarlo import IWAEBound, RowSeed, check_iwae, iwae_from_sums, iwae_sums
from entropy_elbo.pass_checks import check_samples
from entropy_elbo.runs import RunFolder
from entropy_elbo.train import StepHooks, TrainConfig, sampled_elbo_parts, train

T = TypeVar("T")
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Context:
    """Where this process sits among the ranks that torchrun started."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints and writes files."""
        return self.rank == 0


def context_from_env(env: dict[str, str] | None = None) -> Context | None:
    """The rank context that torchrun's environment variables describe, or None when not launched by it."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise EntropyElboError(
            f"RANK={env['RANK']!r} WORLD_SIZE={env['WORLD_SIZE']!r}: not integers; launch with torchrun"
        ) from None
    missing = [k for k in ENV_KEYS if k not in env]
    if world > 1 and missing:
        raise EntropyElboError(f"distributed run: environment lacks {', '.join(missing)}; launch with torchrun")
    return Context(rank=rank, world_size=world, local_rank=local)


def setup(ctx: Context, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo otherwise); returns this rank's device (cuda:LOCAL_RANK)."""
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size, **kwargs)
    return device


def teardown() -> None:
    """Leave the process group (a no-op when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_rows(n: int, rank: int, world_size: int) -> np.ndarray:
    """Rank's contiguous block of row indices of n rows; the blocks differ by at most one row and cover all n."""
    if not 0 <= rank < world_size:
        raise EntropyElboError(f"rank {rank} is outside 0..{world_size - 1}")
    start, stop = rank * n // world_size, (rank + 1) * n // world_size
    return np.arange(start, stop, dtype=np.int64)


def all_reduce_sums(acc: dict[str, Tensor]) -> dict[str, Tensor]:
    """Add the float64 sums of every rank (same keys on every rank, in sorted order) in place; returns acc."""
    for key in sorted(acc):
        dist.all_reduce(acc[key], op=dist.ReduceOp.SUM)
    return acc


def any_rank_failed(failed: bool, device: torch.device) -> bool:
    """True on every rank when at least one rank failed (so that no rank waits forever in all_reduce)."""
    flag = torch.tensor([1.0 if failed else 0.0], dtype=torch.float64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.SUM)
    return bool(flag.item() > 0)


def accumulate_sharded(
    model: GaussianVAE,
    x: np.ndarray,
    ctx: Context,
    *,
    batch_size: int,
    samples: int,
    seed: int,
    device: torch.device,
    source: str = "data",
) -> dict[str, Tensor]:
    """This rank's float64 sums over its block of rows, added over all ranks (each row's samples from its own
    stream, `RowSeed(seed)`: the same as in one process)."""
    rows = shard_rows(len(x), ctx.rank, ctx.world_size)
    if len(rows):
        batches = iter_batches(x, batch_size, source=source, indices=rows)
    else:  # more ranks than rows: an empty batch still yields every sum, as zeros
        batches = iter([np.zeros((0, *x.shape[1:]), dtype=np.float32)])
    acc = all_or_none(ctx, device, lambda: accumulate(model, batches, samples=samples, generator=RowSeed(seed),
                                                       device=device, first_row=int(rows[0]) if len(rows) else 0))
    return all_reduce_sums(acc)


def all_or_none(ctx: Context | None, device: torch.device, step: Callable[[], T]) -> T:
    """Run step on this rank; if it fails on any rank, every rank raises (none waits forever in a collective)."""
    if ctx is None or ctx.world_size == 1:
        return step()
    error: Exception | None = None
    try:
        result = step()
    except Exception as err:
        error = err
    if any_rank_failed(error is not None, device):
        if error is not None:
            raise error
        raise EntropyElboError("another rank failed (its message is above); fix that and rerun")
    return result


def estimate_sharded(
    model: GaussianVAE,
    x: np.ndarray,
    ctx: Context,
    *,
    batch_size: int,
    samples: int,
    seed: int,
    device: torch.device,
    source: str = "data",
) -> Estimate:
    """The one-process `estimate` over all of x, computed by every rank on its block of rows (same on all ranks)."""
    check_samples(samples)
    if len(x) == 0:
        raise EntropyElboError(f"{source}: no rows to estimate over; pass a file with at least one data point")
    acc = accumulate_sharded(model, x, ctx, batch_size=batch_size, samples=samples, seed=seed, device=device,
                             source=source)
    return summarize(model, acc, samples=samples, d=int(np.prod(x.shape[1:])))


def iwae_sharded(model: GaussianVAE, x: np.ndarray, ctx: Context, *, batch_size: int, samples: int, seed: int,
                 device: torch.device, source: str = "data") -> IWAEBound:
    """The one-process IWAE bound over all of x: each rank's float64 sums over its block of rows, added (each
    row's K samples from its own stream, `RowSeed(seed, stream=1)`: the same as in one process)."""
    check_iwae(samples)
    rows = shard_rows(len(x), ctx.rank, ctx.world_size)
    batches = (iter_batches(x, batch_size, source=source, indices=rows) if len(rows)
               else iter([np.zeros((0, *x.shape[1:]), dtype=np.float32)]))
    sums = all_or_none(ctx, device, lambda: iwae_sums(model, batches, samples=samples,
                                                       draws=RowSeed(seed, stream=1), device=device,
                                                       first_row=int(rows[0]) if len(rows) else 0))
    return iwae_from_sums(all_reduce_sums(sums), samples)


# ---------------------------------------------------------------------------------------------- collapse


def collapse_sharded(
    model: GaussianVAE,
    x: np.ndarray,
    ctx: Context,
    *,
    batch_size: int,
    device: torch.device,
    source: str = "data",
    threshold: float | None = None,
    delta: float | None = None,
    active_threshold: float = ACTIVE_THRESHOLD,
    lucas_epsilon: float = LUCAS_EPSILON,
    lucas_delta: float = LUCAS_DELTA,
) -> CollapseResult:
    """The one-process `collapse` over all of x: every rank streams its block, the statistics merged over ranks."""
    check_settings(threshold, delta, active_threshold, lucas_epsilon, lucas_delta)
    rows = shard_rows(len(x), ctx.rank, ctx.world_size)
    prior_log_var = None if model.prior_log_var is None else model.prior_log_var.detach()

    def local() -> CollapseSums | None:
        if not len(rows):  # more ranks than rows
            return None
        batches = iter_batches(x, batch_size, source=source, indices=rows)
        return stream_sums(encoder_outputs(model, batches, device), prior_log_var=prior_log_var, epsilon=lucas_epsilon)

    sums = merge_over_ranks(all_or_none(ctx, device, local), ctx, device, lucas_epsilon)
    return summarize_collapse(sums, prior_log_var=prior_log_var, threshold=threshold, delta=delta,
                              active_threshold=active_threshold, lucas_delta=lucas_delta)


def merge_over_ranks(mine: CollapseSums | None, ctx: Context, device: torch.device, epsilon: float) -> CollapseSums:
    """Every rank's collapse statistics merged in rank order (Chan et al.'s update), the same on every rank."""
    h = torch.tensor([-1.0 if mine is None else float(mine.entropy.shape[0])], dtype=torch.float64, device=device)
    dist.all_reduce(h, op=dist.ReduceOp.MAX)  # a rank without rows learns H from the others
    width = int(h.item())
    if width < 0:
        raise EntropyElboError("data: no rows to measure collapse over; pass a file with at least one data point")
    if mine is None:
        packed = torch.zeros(1 + 6 * width, dtype=torch.float64, device=device)
    else:  # (1 + 6H,): n, then the six (H,) statistics
        stats = (mine.entropy, mine.kl, mine.nu_mean, mine.nu_m2, mine.small_kl, mine.tau2)
        packed = torch.cat([torch.tensor([float(mine.n)], dtype=torch.float64, device=device), *stats])
    gathered = [torch.empty_like(packed) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, packed)
    total: CollapseSums | None = None
    for part in gathered:
        n = int(part[0].item())
        if n == 0:
            continue
        entropy, kl, nu_mean, nu_m2, small_kl, tau2 = part[1:].reshape(6, width)
        piece = CollapseSums(n=n, entropy=entropy, kl=kl, nu_mean=nu_mean, nu_m2=nu_m2, small_kl=small_kl,
                             epsilon=epsilon, tau2=tau2)
        total = piece if total is None else merge_sums(total, piece)
    assert total is not None  # width >= 0: some rank had rows
    return total


# ---------------------------------------------------------------------------------------------- training


class ELBOStep(torch.nn.Module):
    """One training step's sampled ELBO (eq. 2) as a module's forward, so that DistributedDataParallel sees it.

    DDP prepares its gradient all-reduce in its own forward; the trainer calls encode and decode, never forward.
    """

    def __init__(self, model: VAEBase) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, samples: int, generator: torch.Generator | None
                ) -> tuple[Tensor, Tensor, Tensor | None]:
        return sampled_elbo_parts(self.model, x, samples, generator)


class DDPHooks(StepHooks):
    """The trainer's step through DDP (gradients averaged over ranks) and its epoch sums added over ranks."""

    def __init__(self, ddp: DistributedDataParallel) -> None:
        self.ddp = ddp

    def parts(self, model: VAEBase, x: Tensor, samples: int, generator: torch.Generator | None
              ) -> tuple[Tensor, Tensor, Tensor | None]:
        f, log_tau2, dec_ent = self.ddp(x, samples, generator)
        finite = bool(torch.isfinite(f.detach().mean()))
        if any_rank_failed(not finite, f.device) and finite:
            f = f + float("nan")  # another rank's loss is not finite: every rank stops at this same step
        return f, log_tau2, dec_ent

    def reduce(self, n: int, elbo_sum: Tensor, latent_sum: Tensor, dec_sum: Tensor
               ) -> tuple[int, Tensor, Tensor, Tensor]:
        h = latent_sum.numel()
        count = torch.tensor([float(n)], dtype=torch.float64, device=elbo_sum.device)
        packed = torch.cat([count, elbo_sum.reshape(1), dec_sum.reshape(1), latent_sum])  # (3 + H,) float64
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        return int(packed[0].item()), packed[1], packed[3 : 3 + h], packed[2]


def rows_per_rank(n: int, ctx: Context) -> int:
    """Training rows of each rank: equal blocks, so every rank takes the same number of steps (DDP needs it)."""
    per_rank = n // ctx.world_size
    if per_rank == 0:
        raise EntropyElboError(f"data: {n} training rows for {ctx.world_size} processes; pass more rows or run "
                               "fewer processes (--nproc_per_node)")
    return per_rank


def sharded_trainer(ctx: Context) -> Callable[..., list[dict[str, object]]]:
    """`train` with this rank's signature under torchrun: DDP over equal blocks of rows; rank 0 logs and writes."""

    def train_sharded(model: VAEBase, x: np.ndarray, config: TrainConfig, *, device: torch.device,
                      on_epoch: Callable[[dict[str, object]], None] | None = None,
                      heldout: np.ndarray | None = None, run: RunFolder | None = None, resume: bool = False,
                      metadata: dict[str, object] | None = None, progress: bool | None = None,
                      threads: int | None = None) -> list[dict[str, object]]:
        if resume:
            raise EntropyElboError("--resume under torchrun is not supported; resume the run in one process")
        per_rank = rows_per_rank(len(x), ctx)
        block = x[ctx.rank * per_rank : (ctx.rank + 1) * per_rank]
        model.to(device)
        ddp = DistributedDataParallel(ELBOStep(model), device_ids=[device] if device.type == "cuda" else None)
        # Rank r samples with seed + r (rank 0 keeps the seed that its checkpoint records); only rank 0 evaluates
        # the held-out rows, writes the run and reports epochs.
        rank_config = replace(config, seed=config.seed + ctx.rank)
        main = ctx.is_main
        try:
            with DDPHooks(ddp):
                # all_or_none ends in a collective: no rank leaves (and tears the group down) while rank 0 still
                # writes the last epoch, and a failed write stops every rank.
                return all_or_none(ctx, device, lambda: train(
                    model, block, rank_config, device=device, on_epoch=on_epoch if main else None,
                    heldout=heldout if main else None, run=run if main else None, metadata=metadata,
                    progress=progress if main else False, threads=threads))
        finally:
            del ddp  # DDP's reducer holds the process group: free it before teardown destroys the group
            gc.collect()

    return train_sharded


def barrier(ctx: Context | None) -> None:
    """Wait for every rank (a no-op in one process)."""
    if ctx is not None and ctx.world_size > 1:
        dist.barrier()
