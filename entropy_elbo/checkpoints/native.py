"""Our checkpoint format: safetensors weights plus JSON metadata (model config, data shape, training).

Loading it runs no pickle: safetensors holds raw tensors and string metadata only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from entropy_elbo.errors import CheckpointError
from entropy_elbo.models import ModelConfig, VAEBase, build_model

FORMAT = "entropy-elbo/1"


def atomic_write(path: Path, write: callable) -> None:
    """Call write(tmp_path) on a temporary file beside `path`, fsync it, then rename it over `path`."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise CheckpointError(f"{path}: folder {folder} does not exist; create it or choose another --out")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise CheckpointError(f"{path}: cannot write in {folder} ({err.strerror}); choose a writable --out") from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(model: VAEBase, path: str | Path, **metadata: object) -> Path:
    """Write `model` (its config and weights) and JSON-able metadata atomically to a .safetensors file."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": model.config.to_json()}
    meta.update({k: json.dumps(v) for k, v in metadata.items()})
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def read_metadata(path: str | Path) -> dict[str, str] | None:
    """The safetensors string metadata of `path`, or None when the file is not safetensors."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return None
            size = int.from_bytes(head, "little")
            if size <= 0 or size > 100_000_000:
                return None
            header = json.loads(fh.read(size))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    meta = header.get("__metadata__") or {}
    return meta if isinstance(meta, dict) else None


def is_native(path: str | Path) -> bool:
    """True when `path` is a safetensors file written by entropy-elbo."""
    meta = read_metadata(path)
    return bool(meta) and meta.get("format") == FORMAT


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[VAEBase, dict[str, object]]:
    """Rebuild the model saved at `path`; returns it (in eval mode) and its decoded metadata."""
    path = Path(path)
    meta = read_metadata(path)
    if not meta or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an entropy-elbo checkpoint (no '{FORMAT}' metadata)")
    try:
        config = ModelConfig.from_json(meta["config"])
        extra = {k: json.loads(v) for k, v in meta.items() if k not in ("format", "config")}
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: its metadata is damaged ({err}); re-save the checkpoint") from None
    model = build_model(config)
    try:
        state = load_file(path, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot read its tensors ({err}); the file is damaged or truncated") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the saved architecture ({first})") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or Inf; use an earlier checkpoint")
    return model.to(device).eval(), extra
