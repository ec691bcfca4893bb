"""Checkpoint files from the wild, read without running their code.

state_dicts (`.pt`/`.pth`, or a dict holding one), Lightning `.ckpt`, safetensors, pythae model folders;
TorchScript archives, whole pickled modules and pythae's pickled networks are code, so they are opened only
through `trusted_load`, the one door to a loader that can run code, which stays shut without `--trust-code`.
Every other `torch.load` is `weights_only=True`.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from entropy_elbo.checkpoints.autoencoder_kl import WEIGHTS, config_from_shapes, folder_config, is_autoencoder_kl
from entropy_elbo.checkpoints.native import read_metadata
from entropy_elbo.checkpoints.peers import check_pythae, custom_route
from entropy_elbo.errors import CheckpointError, first_line, parse_json
from entropy_elbo.limits import check_memory, size_text

STATE_KEYS = ("state_dict", "model_state_dict", "model")
WRAPPER_PREFIXES = ("model.", "module.", "vae.", "net.", "_orig_mod.", "_forward_module.")
TRUST_HINT = "pass --trust-code only if you trust whoever wrote the file"
T = TypeVar("T")


@dataclass
class RawCheckpoint:
    """What a checkpoint file holds: tensors by name and/or a module, the format, and side metadata."""

    fmt: str  # state_dict | lightning | safetensors | torchscript | pythae | pickled module
    state: dict[str, Tensor]
    module: nn.Module | None = None
    meta: dict[str, object] = field(default_factory=dict)
    prefix: str = ""  # the wrapper prefix stripped from every key (Lightning's "model.")


def read_checkpoint(path: str | Path, *, trust_code: bool = False, model_given: bool = False) -> RawCheckpoint:
    """Read `path` (a file or a pythae folder) into tensors and, where the format has one, a module.

    `model_given`: the user's --model class supplies the networks, so a pythae folder's pickles are not needed.
    """
    path = Path(path)
    if path.is_dir() and (config := folder_config(path)) is not None:
        return _read_autoencoder_kl(path / WEIGHTS, config)
    if path.is_dir():
        return _read_pythae(path, trust_code, model_given)
    if read_metadata(path) is not None:
        raw = _read_safetensors(path)
        if is_autoencoder_kl(raw.state):
            return _read_autoencoder_kl(path, folder_config(path.parent), raw)
        return raw
    return _from_object(_torch_load(path, trust_code), path)


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


def _read_autoencoder_kl(path: Path, config: dict | None, raw: RawCheckpoint | None = None) -> RawCheckpoint:
    """diffusers AutoencoderKL weights, with the config saved beside them or one read from their shapes."""
    if raw is None:
        if not path.is_file():
            raise CheckpointError(f"{path.parent}: a diffusers AutoencoderKL folder without {WEIGHTS}; entropy-elbo "
                                  "reads only safetensors weights (save_pretrained's default)")
        raw = _read_safetensors(path)
    raw.fmt = "diffusers"
    raw.meta["config_from"] = f"{path.parent / 'config.json'}" if config is not None else "the weights' shapes"
    try:
        raw.meta["config"] = config if config is not None else config_from_shapes(raw.state)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return raw


def _read_safetensors(path: Path) -> RawCheckpoint:
    try:
        state = load_file(path)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot read its tensors ({err}); the file is damaged or truncated") from None
    return _raw("safetensors", state, {"metadata": read_metadata(path)})


def is_torchscript(path: Path) -> bool:
    """A zip holding `constants.pkl` or a `code/` folder is a TorchScript archive (torch.load hands those to
    torch.jit.load); read from the zip's directory alone, nothing in it is run."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n.split("/", 1)[-1] for n in zf.namelist()]
    except Exception:  # noqa: BLE001 -- a damaged zip raises BadZipFile, OSError, UnicodeDecodeError, ...
        return False
    return any(n == "constants.pkl" or n.endswith("/constants.pkl") or n.startswith("code/") for n in names)


def _torch_load(path: Path, trusted: bool) -> object:
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


def _from_object(obj: object, path: Path) -> RawCheckpoint:
    """A loaded object -> tensors (and the module when a trusted pickle held one)."""
    if isinstance(obj, torch.jit.ScriptModule):
        return RawCheckpoint("torchscript", {k: v for k, v in obj.state_dict().items() if isinstance(v, Tensor)},
                             module=obj)
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


def _pythae_model_folder(path: Path) -> Path:
    """The folder, its final_model/, or the one <Model>_training_<date>/final_model/ of a pipeline's output_dir."""
    if (path / "model_config.json").is_file():
        return path
    runs = sorted(p.parent for p in [*path.glob("final_model/model_config.json"),
                                     *path.glob("*_training_*/final_model/model_config.json")])
    if len(runs) > 1:
        raise CheckpointError(f"{path}: holds {len(runs)} pythae runs ({', '.join(str(r) for r in runs[:4])}); "
                              "pass the final_model folder of the one to read")
    return runs[0] if runs else path


def _read_pythae(path: Path, trusted: bool, model_given: bool = False) -> RawCheckpoint:
    """A pythae model folder: model_config.json, model.pt ({"model_state_dict": ...}), maybe pickled nets."""
    path = _pythae_model_folder(path)
    config_file = path / "model_config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: a folder without model_config.json; pass a pythae model folder or a file")
    try:
        text = config_file.read_text()
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{config_file}: cannot be read ({err})") from None
    config = parse_json(text, str(config_file))
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file}: expected a JSON object with name, input_dim and latent_dim")
    try:
        check_pythae(config)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    weights = path / "model.pt"
    if not weights.is_file():
        raise CheckpointError(f"{path}: no model.pt beside model_config.json; the pythae folder is incomplete")
    raw = _from_object(_torch_load(weights, trusted), weights)
    raw.fmt, raw.meta = "pythae", {"model_config": config}
    pickled = [p for p in ("encoder.pkl", "decoder.pkl") if (path / p).is_file() and not model_given]
    for name in pickled:  # pythae writes custom networks with cloudpickle or pickle
        net = trusted_load(path / name, f"pythae custom network pickled in {name}", trusted,
                           lambda n=name: pickle.loads((path / n).read_bytes()),  # noqa: S301 -- trusted only
                           f", or {custom_route(config)}")
        raw.meta[name[:-4]] = _as_module(net, path / name)
    return raw


def _as_module(net: object, path: Path) -> nn.Module:
    if not isinstance(net, nn.Module):
        raise CheckpointError(f"{path}: holds a {type(net).__name__}, not a torch module")
    return net
