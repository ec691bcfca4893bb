"""Many processes, one estimate: torch.distributed over the rows of the data (torchrun launches the processes).

Every rank streams its own contiguous block of rows through `estimate.accumulate`; the float64 sums that
come out are added across ranks with one all_reduce each, so the result is the one-process estimate.
gloo on CPU, NCCL on CUDA. Monte Carlo samples differ across ranks (seed + rank).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from entropy_elbo.data import iter_batches
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.estimate import Estimate, accumulate, summarize
from entropy_elbo.models.protocol import GaussianVAE

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
    """This rank's float64 sums over its block of rows, added over all ranks (Monte Carlo seed: seed + rank)."""
    rows = shard_rows(len(x), ctx.rank, ctx.world_size)
    generator = torch.Generator(device=device).manual_seed(seed + ctx.rank)
    if len(rows):
        batches = iter_batches(x, batch_size, source=source, indices=rows)
    else:  # more ranks than rows: an empty batch still yields every sum, as zeros
        batches = iter([np.zeros((0, *x.shape[1:]), dtype=np.float32)])
    acc = all_or_none(ctx, device, lambda: accumulate(model, batches, samples=samples, generator=generator,
                                                       device=device))
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
    if samples < 0:
        raise EntropyElboError(f"--samples: got {samples}; pass 0 (no Monte Carlo) or a positive count")
    if len(x) == 0:
        raise EntropyElboError(f"{source}: no rows to estimate over; pass a file with at least one data point")
    acc = accumulate_sharded(model, x, ctx, batch_size=batch_size, samples=samples, seed=seed, device=device,
                             source=source)
    return summarize(model, acc, samples=samples, d=int(np.prod(x.shape[1:])))
