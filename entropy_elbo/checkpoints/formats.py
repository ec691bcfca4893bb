"""Checkpoint files from the wild, read without running their code.

state_dicts (`.pt`/`.pth`, or a dict holding one), Lightning `.ckpt`, safetensors, TorchScript,
pythae model folders; a whole pickled module only when the user trusts the file (`--trust-pickle`).
Every `torch.load` is `weights_only=True` unless trusted: a checkpoint must never run code.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from entropy_elbo.checkpoints.native import read_metadata
from entropy_elbo.errors import CheckpointError

STATE_KEYS = ("state_dict", "model_state_dict", "model")
WRAPPER_PREFIXES = ("model.", "module.", "vae.", "net.", "_orig_mod.", "_forward_module.")
TRUST_HINT = "pass --trust-pickle only if you trust whoever wrote the file"


@dataclass
class RawCheckpoint:
    """What a checkpoint file holds: tensors by name and/or a module, the format, and side metadata."""

    fmt: str  # state_dict | lightning | safetensors | torchscript | pythae | pickled module
    state: dict[str, Tensor]
    module: nn.Module | None = None
    meta: dict[str, object] = field(default_factory=dict)
    prefix: str = ""  # the wrapper prefix stripped from every key (Lightning's "model.")


def read_checkpoint(path: str | Path, *, trust_pickle: bool = False) -> RawCheckpoint:
    """Read `path` (a file or a pythae folder) into tensors and, where the format has one, a module."""
    path = Path(path)
    if path.is_dir():
        return _read_pythae(path, trust_pickle)
    if read_metadata(path) is not None:
        return _read_safetensors(path)
    if _is_torchscript(path):
        return _read_torchscript(path)
    return _from_object(_torch_load(path, trust_pickle), path)


def _read_safetensors(path: Path) -> RawCheckpoint:
    try:
        state = load_file(path)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot read its tensors ({err}); the file is damaged or truncated") from None
    return _raw("safetensors", state, {"metadata": read_metadata(path)})


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a code/ folder and constants.pkl."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except Exception:  # noqa: BLE001 -- a damaged zip raises BadZipFile, OSError, UnicodeDecodeError, ...
        return False
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


def _read_torchscript(path: Path) -> RawCheckpoint:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # noqa: BLE001 -- torch's C++ reader of a damaged archive raises many kinds
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: cannot load this TorchScript archive ({first})") from None
    state = {k: v for k, v in module.state_dict().items() if isinstance(v, Tensor)}
    return RawCheckpoint("torchscript", state, module=module)


def _torch_load(path: Path, trust_pickle: bool) -> object:
    """torch.load with weights_only=True; the unrestricted unpickler only under --trust-pickle."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: our one line says enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 -- a damaged file or, when trusted, the file's own code
        blocked = _blocked(err)
        if blocked and not trust_pickle:
            raise CheckpointError(f"{path}: holds pickled Python objects beyond tensors ({blocked}); loading it "
                                  f"could run code, so it was refused; {TRUST_HINT}") from None
        if "Unsupported operand 149" in str(err) and not trust_pickle:  # FRAME, protocol 4+: torch's safe loader stops
            raise CheckpointError(f"{path}: pickled with a protocol torch's safe loader cannot read ({_reason(err)}); "
                                  "re-save it with torch.save(..., pickle_protocol=2) or as safetensors, or "
                                  f"{TRUST_HINT}") from None
        raise CheckpointError(
            f"{path}: not a checkpoint entropy-elbo can read ({type(err).__name__}: {_reason(err)}); "
            "expected a state_dict, Lightning .ckpt, safetensors, TorchScript or pythae folder"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def _reason(err: BaseException) -> str:
    """torch's unpickler errors are paragraphs: keep the line that says what went wrong."""
    match = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
    return match.group(1).strip()[:200] if match else _first_line(err)


def _blocked(err: BaseException) -> str | None:
    """The global that torch's safe unpickler refused, or None when the file is simply not a pickle we know."""
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    return f"refused global {match.group(1)}" if match else None


def _from_object(obj: object, path: Path) -> RawCheckpoint:
    """A loaded object -> tensors (and the module when a trusted pickle held one)."""
    if isinstance(obj, nn.Module):
        return RawCheckpoint("pickled module", dict(obj.state_dict()), module=obj)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state_dict or a dict holding one")
    meta: dict[str, object] = {}
    fmt = "state_dict"
    if "pytorch-lightning_version" in obj or ("state_dict" in obj and "global_step" in obj):
        fmt = "lightning"
        meta = {k: obj[k] for k in ("pytorch-lightning_version", "epoch", "global_step", "hyper_parameters")
                if k in obj}
    if _is_tensor_dict(obj):
        return _raw(fmt, obj, meta)
    for key in STATE_KEYS:
        inner = obj.get(key)
        if isinstance(inner, nn.Module):
            return RawCheckpoint("pickled module", dict(inner.state_dict()), module=inner, meta={"key": key})
        if isinstance(inner, dict) and _is_tensor_dict(inner):
            meta["key"] = key
            return _raw(fmt, inner, meta)
    junk = [f"{k!r} ({type(v).__name__})" for k, v in obj.items() if not isinstance(v, (Tensor, dict, nn.Module))]
    if any(isinstance(v, Tensor) for v in obj.values()) and junk:
        raise CheckpointError(f"{path}: a state_dict with entries that are not tensors ({', '.join(junk[:5])}); "
                              "save only the model's state_dict()")
    keys = ", ".join(sorted(str(k) for k in obj)[:10])
    raise CheckpointError(f"{path}: a dict without a state_dict (keys: {keys}); "
                          f"expected one of {', '.join(STATE_KEYS)}")


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


def _read_pythae(path: Path, trust_pickle: bool) -> RawCheckpoint:
    """A pythae model folder: model_config.json, model.pt ({"model_state_dict": ...}), maybe pickled nets."""
    if not (path / "model_config.json").is_file() and (path / "final_model" / "model_config.json").is_file():
        path = path / "final_model"
    config_file = path / "model_config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: a folder without model_config.json; pass a pythae model folder or a file")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{config_file}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file}: expected a JSON object with name, input_dim and latent_dim")
    weights = path / "model.pt"
    if not weights.is_file():
        raise CheckpointError(f"{path}: no model.pt beside model_config.json; the pythae folder is incomplete")
    raw = _from_object(_torch_load(weights, trust_pickle), weights)
    raw.fmt, raw.meta = "pythae", {"model_config": config}
    pickled = [p for p in ("encoder.pkl", "decoder.pkl") if (path / p).is_file()]
    if pickled and not trust_pickle:
        raise CheckpointError(
            f"{path}: custom networks are pickled in {' and '.join(pickled)}; loading them could run code; "
            f"{TRUST_HINT}, or pass --model FILE.py:NAME to rebuild the networks"
        )
    for name in pickled:
        raw.meta[name[:-4]] = _load_pickled_net(path / name)
    return raw


def _load_pickled_net(path: Path) -> nn.Module:
    """A pythae custom network (trusted): pythae writes these with cloudpickle or pickle."""
    try:
        with open(path, "rb") as fh:
            net = pickle.load(fh)  # noqa: S301 -- only under --trust-pickle
    except Exception as err:  # noqa: BLE001 -- arbitrary user code ran; report it in one line
        raise CheckpointError(f"{path}: cannot unpickle it ({type(err).__name__}: {_first_line(err)})") from None
    if not isinstance(net, nn.Module):
        raise CheckpointError(f"{path}: holds a {type(net).__name__}, not a torch module")
    return net
