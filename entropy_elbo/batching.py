"""Rows per evaluation chunk, chosen from the memory the device has free when the user gives none."""

from __future__ import annotations

import torch

from entropy_elbo import limits
from entropy_elbo.errors import EntropyElboError

MIN_ROWS = 64
CPU_MAX_ROWS = 8192  # measured on VAE-1 (D=100): larger chunks run no faster on a CPU, they only cost memory
GPU_MAX_ROWS = 2**18
CPU_BUDGET_BYTES = 256 * 2**20  # keeps a pass over a file far larger than RAM well under 1 GB resident
MEMORY_FRACTION = 0.25  # of what the device has free


def available_memory(device: torch.device | str) -> int:
    """Bytes free on `device`: CUDA's free memory, or the OS's MemAvailable for the CPU (1 GiB if unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return limits.available_memory()


def bytes_per_row(model: torch.nn.Module, row_numel: int, samples: int) -> int:
    """Working memory of one data row in `estimate.accumulate`: the float32 row, its float64 copies and the
    activations of every layer (the sum of the weight matrices' output sizes); Monte Carlo adds the float64
    row and per-row sums, its (samples x rows x D) blocks being capped on their own in `montecarlo`."""
    widths = sum(p.shape[0] for p in model.parameters() if p.dim() >= 2)
    per_row = 4 * row_numel * 2 + 8 * row_numel * 2 + 4 * widths * 2
    if samples > 0:
        per_row += 8 * row_numel * 3
    return per_row


def auto_batch_size(model: torch.nn.Module, row_numel: int, samples: int, device: torch.device | str) -> int:
    """Rows per chunk: a quarter of the free memory (at most 256 MiB on a CPU) over `bytes_per_row`, clamped."""
    device = torch.device(device)
    budget = MEMORY_FRACTION * available_memory(device)
    cap = GPU_MAX_ROWS if device.type == "cuda" else CPU_MAX_ROWS
    if device.type != "cuda":
        budget = min(budget, CPU_BUDGET_BYTES)
    rows = int(budget // max(1, bytes_per_row(model, row_numel, samples)))
    return max(MIN_ROWS, min(cap, rows))


def resolve_batch_size(
    batch_size: int | None, model: torch.nn.Module, row_numel: int, samples: int, device: torch.device | str
) -> int:
    """The user's --batch-size when given (it must be >= 1), else `auto_batch_size`."""
    if batch_size is None:
        return auto_batch_size(model, row_numel, samples, device)
    if batch_size < 1:
        raise EntropyElboError(f"--batch-size: got {batch_size}; it must be >= 1 (or leave it out to choose from "
                               "free memory)")
    return batch_size
