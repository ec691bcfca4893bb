"""What a checkpoint file holds before anything is built from it, and the checks every one passes.

`RawCheckpoint` is what the readers return (tensors by name, maybe a module, the format, side metadata);
`trusted_load` is the one door to a loader that can run code from a file, shut without `--trust-code`;
`check_finite` refuses tensors that are not dense real numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor, nn

from entropy_elbo.errors import CheckpointError, first_line
from entropy_elbo.limits import size_text

TRUST_HINT = "pass --trust-code only if you trust whoever wrote the file"
T = TypeVar("T")
# every RawCheckpoint.fmt a reader returns (read_checkpoint, or wrap_module's live module); each has one source
RAW_FORMATS = ("state_dict", "lightning", "safetensors", "torchscript", "pickled module", "live module", "pythae",
               "diffusers")

@dataclass
class RawCheckpoint:
    """What a checkpoint file holds: tensors by name and/or a module, the format, and side metadata."""

    fmt: str  # state_dict | lightning | safetensors | torchscript | pythae | pickled module
    state: dict[str, Tensor]
    module: nn.Module | None = None
    meta: dict[str, object] = field(default_factory=dict)
    prefix: str = ""  # the wrapper prefix stripped from every key (Lightning's "model.")



def trusted_load(path: Path, what: str, trusted: bool, load: Callable[[], T], instead: str = "") -> T:
    """The one door to loaders that run code from a file (TorchScript, pickle): shut unless --trust-code."""
    if not trusted:
        raise CheckpointError(f"{path}: {what}; needs --trust-code: loading it runs code from the file, so it was "
                              f"refused; {TRUST_HINT}{instead}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load()
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 -- the file's own code ran: any failure is one line
        raise CheckpointError(f"{path}: loading the {what} failed ({type(err).__name__}: {first_line(err)})") from None



def check_finite(state: dict[str, Tensor], path: Path, file: Path | None = None) -> None:
    """Refuse tensors that are not dense real numbers in memory (sparse, meta, quantized, complex, 8-bit float),
    integer layer weights, and floating tensors holding NaN or Inf, naming the tensor and its shape. `file`: the
    safetensors file `state` was read from, whose bytes are checked instead (finite_file: no page stays resident)."""
    if file is not None:
        from entropy_elbo.checkpoints.finite_file import nonfinite_tensor

        bad = nonfinite_tensor(file)
        if bad is not None:
            raise CheckpointError(f"{path}: tensor {bad[0]!r} of shape {bad[1]} holds {bad[2]}; the file is damaged or "
                                  "its training diverged, use an earlier checkpoint")
    for name, tensor in state.items():
        odd = odd_tensor(tensor)
        if odd:
            raise CheckpointError(f"{path}: tensor {name!r} of shape {tuple(tensor.shape)} is {odd}; entropy-elbo "
                                  "reads dense float64/32/16 or bfloat16 tensors, save the weights as those")
        if name.rsplit(".", 1)[-1] == "weight" and not tensor.is_floating_point():
            raise CheckpointError(f"{path}: layer weight {name!r} of shape {tuple(tensor.shape)} is of dtype "
                                  f"{str(tensor.dtype).replace('torch.', '')}, not floating point; save a float model")
        if file is None and tensor.is_floating_point() and not all_finite(tensor):
            what = "NaN" if torch.isnan(tensor).any() else "Inf"
            raise CheckpointError(f"{path}: tensor {name!r} of shape {tuple(tensor.shape)} holds {what}; the file is "
                                  "damaged or its training diverged, use an earlier checkpoint")


def all_finite(tensor: Tensor) -> bool:
    """No NaN or Inf in a floating tensor: its min and max in one reduction pass (a NaN propagates to both)."""
    if tensor.numel() == 0:
        return True
    return bool(torch.isfinite(torch.stack(torch.aminmax(tensor.detach()))).all())


VIEW_SLACK = 2**20  # an expanded view smaller than this is copied out when used; a larger one is refused


def odd_tensor(tensor: Tensor) -> str | None:
    """What makes `tensor` unusable as a weight (its layout, device or dtype), or None for a dense real tensor."""
    if tensor.is_meta:
        return "on the meta device (shape only, no values)"
    if tensor.layout != torch.strided or tensor.is_nested:
        return f"stored in layout {str(tensor.layout).replace('torch.', '')}"
    if tensor.is_quantized:
        return f"quantized ({str(tensor.dtype).replace('torch.', '')})"
    if tensor.is_complex():
        return f"complex ({str(tensor.dtype).replace('torch.', '')})"
    if tensor.is_floating_point() and tensor.element_size() == 1:
        return f"in an 8-bit float format ({str(tensor.dtype).replace('torch.', '')})"
    logical, stored = tensor.numel() * tensor.element_size(), tensor.untyped_storage().nbytes()
    if logical > max(stored, VIEW_SLACK):  # strides of 0 (expand) or overlapping: every use would copy it out
        return (f"a view over {size_text(stored)} of storage whose strides {tuple(tensor.stride())} spread it to "
                f"{size_text(logical)}")
    return None

