"""PyTorch and Lightning files, read without running their code: state_dicts (`.pt`/`.pth`, or a dict holding
one), Lightning `.ckpt`, safetensors, and (only through `raw.trusted_load`, with `--trust-code`) TorchScript
archives and whole pickled modules. Every other `torch.load` is `weights_only=True`.

A file holding a module (TorchScript, a trusted pickle, a live module) is run through its own methods; a
state_dict is built by the sources after this one in the table (the user's class, PyTorch-VAE's layout, a plain
MLP). PyTorch-VAE's Lightning hyper_parameters (`kld_weight`) imply the fixed decoder variance its loss stands for.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from entropy_elbo.checkpoints.likelihood import KL_CAPACITY, NOT_AN_ELBO, config_items
from entropy_elbo.checkpoints.native import read_metadata
from entropy_elbo.checkpoints.nested import find_nested, state_dicts
from entropy_elbo.checkpoints.raw import RawCheckpoint, trusted_load
from entropy_elbo.checkpoints.source import Built, Source
from entropy_elbo.errors import CheckpointError, first_line
from entropy_elbo.limits import check_memory, size_text

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.options import LoadOptions

STATE_KEYS = ("state_dict", "model_state_dict", "model")
WRAPPER_PREFIXES = ("model.", "module.", "vae.", "net.", "_orig_mod.", "_forward_module.")
MODULE_KINDS = {"torchscript": "TorchScript module", "live module": "live module (in this process)"}


def read_torch_file(path: Path, trusted: bool, key: str | None = None) -> RawCheckpoint:
    """A torch.save file (or TorchScript archive) -> tensors, and the module when a trusted file held one; `key`
    (--checkpoint-key) names a state_dict nested in a dict."""
    return from_object(torch_load(path, trusted), path, key)


def read_safetensors(path: Path) -> RawCheckpoint:
    """A safetensors file's tensors, with its string metadata."""
    try:
        state = load_file(path)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot read its tensors ({err}); the file is damaged or truncated") from None
    return _raw("safetensors", state, {"metadata": read_metadata(path), "file": path})  # check_finite reads it


def is_torchscript(path: Path) -> bool:
    """A zip holding `constants.pkl` or a `code/` folder is a TorchScript archive (torch.load hands those to
    torch.jit.load); read from the zip's directory alone, nothing in it is run."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n.split("/", 1)[-1] for n in zf.namelist()]
    except Exception:  # noqa: BLE001 -- a damaged zip raises BadZipFile, OSError, UnicodeDecodeError, ...
        return False
    return any(n == "constants.pkl" or n.endswith("/constants.pkl") or n.startswith("code/") for n in names)



def torch_load(path: Path, trusted: bool) -> object:
    """torch.load with weights_only=True; TorchScript and arbitrary pickles only through `trusted_load`."""
    if is_torchscript(path):
        return trusted_load(path, "TorchScript archive", trusted, lambda: torch.jit.load(str(path), map_location="cpu"))
    check_archive_size(path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: our one line says enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 -- torch's reader of a damaged file raises many kinds
        blocked = _blocked(err)
        if blocked or "Unsupported operand 149" in str(err):  # FRAME, protocol 4+: torch's safe loader stops
            what = (f"holds pickled Python objects beyond tensors ({blocked})" if blocked else
                    f"pickled with a protocol torch's safe loader cannot read ({_reason(err)})")
            instead = "" if blocked else ", or re-save it with torch.save(..., pickle_protocol=2) or as safetensors"
            return trusted_load(path, what, trusted, lambda: torch.load(path, map_location="cpu", weights_only=False),
                                instead)
        raise CheckpointError(
            f"{path}: not a checkpoint entropy-elbo can read ({type(err).__name__}: {_reason(err)}); "
            "expected a state_dict, Lightning .ckpt, safetensors, TorchScript or pythae folder"
        ) from None


def check_archive_size(path: Path) -> None:
    """torch.save stores tensors uncompressed in its zip: refuse, before torch reads it, an archive whose members
    inflate to more than the file holds (a deflated 1 GiB storage in a 1 MB file) or than memory can take."""
    try:
        with zipfile.ZipFile(path) as zf:
            inflated = sum(info.file_size for info in zf.infolist())
    except Exception:  # noqa: BLE001 -- not a zip (or a damaged one): torch's own reader says what it is
        return
    size = path.stat().st_size
    if inflated > 2 * size + 2**20:
        raise CheckpointError(f"{path}: its zip members inflate to {size_text(inflated)} from a {size_text(size)} "
                              "file, but torch.save never compresses; the file is crafted or damaged, re-save it")
    check_memory(inflated, f"{path}: its {size_text(inflated)} of tensors", "convert it to safetensors on a larger "
                 "machine", CheckpointError)


def _reason(err: BaseException) -> str:
    """torch's unpickler errors are paragraphs: keep the line that says what went wrong."""
    match = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
    return match.group(1).strip()[:200] if match else first_line(err)


def _blocked(err: BaseException) -> str | None:
    """The global that torch's safe unpickler refused, or None when the file is simply not a pickle we know."""
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    return f"refused global {match.group(1)}" if match else None


def from_object(obj: object, path: Path, key: str | None = None) -> RawCheckpoint:
    """A loaded object -> tensors (and the module when a trusted pickle held one)."""
    if isinstance(obj, torch.jit.ScriptModule):
        return RawCheckpoint("torchscript", {k: v for k, v in obj.state_dict().items() if isinstance(v, Tensor)},
                             module=obj)
    if isinstance(obj, nn.Module):
        return RawCheckpoint("pickled module", dict(obj.state_dict()), module=obj)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state_dict or a dict holding one")
    if key is not None:
        return _nested(obj, path, key)
    meta: dict[str, object] = {}
    fmt = "state_dict"
    if "pytorch-lightning_version" in obj or ("state_dict" in obj and "global_step" in obj):
        fmt = "lightning"
        meta = {k: obj[k] for k in ("pytorch-lightning_version", "epoch", "global_step", "hyper_parameters")
                if k in obj}
    if _is_tensor_dict(obj):
        return _raw(fmt, _named_keys(obj, path, "the state_dict"), meta)
    for name in STATE_KEYS:
        inner = obj.get(name)
        if isinstance(inner, nn.Module):
            return RawCheckpoint("pickled module", dict(inner.state_dict()), module=inner, meta={"key": name})
        if isinstance(inner, dict) and _is_tensor_dict(inner):
            meta["key"] = name
            return _raw(fmt, _named_keys(inner, path, f"its {name!r}"), meta)
        if isinstance(inner, dict):
            _refuse_junk(inner, path, f"its {name!r} holds")
    if not any(isinstance(v, Tensor) for v in obj.values()) and state_dicts(obj):
        return _nested(obj, path, None)
    _refuse_junk(obj, path, "a state_dict with")
    keys = ", ".join(sorted(str(k) for k in obj)[:10])
    raise CheckpointError(f"{path}: a dict without a state_dict (keys: {keys}); "
                          f"expected one of {', '.join(STATE_KEYS)}")


def _refuse_junk(obj: dict, path: Path, what: str) -> None:
    """A dict of tensors with other entries among them: refused, naming those entries."""
    junk = [f"{k!r} ({type(v).__name__})" for k, v in obj.items() if not isinstance(v, (Tensor, dict, nn.Module))]
    if any(isinstance(v, Tensor) for v in obj.values()) and junk:
        raise CheckpointError(f"{path}: {what} entries that are not tensors ({', '.join(junk[:5])}); "
                              "save only the model's state_dict()")


def _named_keys(state: dict, path: Path, what: str) -> dict:
    """A state_dict's keys are parameter names (text): a key of another type is refused, naming it."""
    odd = [k for k in state if not isinstance(k, str)]
    if odd:
        raise CheckpointError(f"{path}: {what} has keys that are not parameter names ({odd[0]!r} of type "
                              f"{type(odd[0]).__name__}); save the model's own state_dict(), whose keys name the "
                              "parameters")
    return state


def _nested(obj: dict, path: Path, key: str | None) -> RawCheckpoint:
    """The state_dict nested under `key`, or the only one in `obj`, with where it was found (a note)."""
    where, inner = find_nested(obj, path, key)
    meta: dict[str, object] = {"key": where, "found_under": where}
    if isinstance(inner, nn.Module):
        return RawCheckpoint("pickled module", dict(inner.state_dict()), module=inner, meta=meta)
    return _raw("state_dict", _named_keys(inner, path, f"its {where!r}"), meta)


def _is_tensor_dict(obj: dict) -> bool:
    tensors = [v for v in obj.values() if isinstance(v, Tensor)]
    return bool(tensors) and len(tensors) >= len(obj) - sum(1 for v in obj.values() if v is None)


def _raw(fmt: str, state: dict[str, Tensor], meta: dict[str, object]) -> RawCheckpoint:
    stripped, prefix = _strip_prefix(state)
    return RawCheckpoint(fmt, stripped, meta=meta, prefix=prefix)


def _strip_prefix(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """Drop a wrapper prefix (`model.`, `module.`, ...) that every key carries; returns (state, prefix)."""
    state = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    prefix = ""
    changed = True
    while changed:
        changed = False
        for p in WRAPPER_PREFIXES:
            if state and all(k.startswith(p) for k in state):
                state = {k[len(p):]: v for k, v in state.items()}
                prefix += p
                changed = True
    return state, prefix




# ---------------------------------------------------------------------------------------------- PyTorch-VAE

def lightning_implied_variance(hparams: object, d: int) -> tuple[float | None, str] | None:
    """PyTorch-VAE: loss = MSE(mean over D) + kld_weight * KL implies sigma^2 = D * kld_weight / 2 (x beta)."""
    found = {k: v for k, v in config_items(hparams, "hyper_parameters")
             if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    weight = next((found[k] for k in ("kld_weight", "M_N") if isinstance(found.get(k), (int, float))), None)
    if weight is None or not weight > 0:
        return None
    other = NOT_AN_ELBO.get(str(found.get("name")))
    if other:
        return None, f"hyper_parameters: PyTorch-VAE {found['name']}: {other}; no sigma^2 is implied"
    beta = found.get("beta")
    loss_type = found.get("loss_type", "B" if beta is not None else None)  # PyTorch-VAE's BetaVAE defaults to 'B'
    if loss_type == "B":
        return None, f"hyper_parameters: kld_weight {weight:g} with loss_type 'B': {KL_CAPACITY}; no sigma^2 is " \
                     "implied"
    scale = float(beta) if isinstance(beta, (int, float)) and loss_type == "H" else 1.0
    if not 0 < scale < float("inf"):
        return None, f"hyper_parameters: beta {scale:g} with loss_type 'H': only a positive finite beta makes the " \
                     "loss a multiple of the negative ELBO, so no sigma^2 is implied"
    sigma2 = d * float(weight) * scale / 2
    weights = f"kld_weight {weight:g}" + (f" x beta {scale:g}" if scale != 1.0 else "")
    return sigma2, (f"hyper_parameters: {weights}; PyTorch-VAE's loss MSE (mean over D={d}) + {weights} KL is "
                    f"{weights} times the negative ELBO at sigma^2 = D x {weights} / 2 = {sigma2:g}, a fixed decoder "
                    "variance it never learned")


class TorchFileSource(Source):
    """A PyTorch or Lightning file; builds the module only when the file held one (TorchScript, a pickle)."""

    name = "PyTorch / Lightning file"
    formats = ("state_dict", "lightning", "safetensors", "torchscript", "pickled module", "live module")

    def recognise(self, raw: RawCheckpoint, options: LoadOptions) -> bool:
        return raw.module is not None

    def build(self, raw: RawCheckpoint, options: LoadOptions, source: str) -> Built:
        return Built(raw.module, MODULE_KINDS.get(raw.fmt, "pickled module (trusted)"), raw.state, own_code=True)

    def implied_variance(self, raw: RawCheckpoint, d: int) -> tuple[float | None, str] | None:
        return lightning_implied_variance(raw.meta.get("hyper_parameters"), d)
