"""Which torch device to run on: `auto` picks CUDA when present; asking for an absent one is a user error."""

from __future__ import annotations

import torch

from entropy_elbo.errors import EntropyElboError


def resolve_device(name: str) -> torch.device:
    """The torch device for --device NAME (auto, cpu, cuda, cuda:N, mps)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise EntropyElboError(f"--device: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EntropyElboError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise EntropyElboError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise EntropyElboError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    if device.type == "cpu" and device.index not in (None, 0):
        raise EntropyElboError(f"--device {name}: the CPU takes no device index; use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise EntropyElboError(f"--device: {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device
