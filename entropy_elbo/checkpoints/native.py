"""Our checkpoint format: safetensors weights plus JSON metadata (model config, data shape, training).

Loading it runs no pickle: safetensors holds raw tensors and string metadata only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from entropy_elbo.atomic import atomic_write
from entropy_elbo.checkpoints.introspect import Finding, Introspection
from entropy_elbo.checkpoints.raw import all_finite
from entropy_elbo.checkpoints.source import Source
from entropy_elbo.entropies import LOG_VAR_LIMIT
from entropy_elbo.errors import CheckpointError, EntropyElboError
from entropy_elbo.models import ModelConfig, VAEBase, build_model, check_model_size, model_shell
from entropy_elbo.models.protocol import constant_log_sigma2

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.options import LoadOptions
    from entropy_elbo.checkpoints.raw import RawCheckpoint

FORMAT = "entropy-elbo/1"


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
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or err}); check its permissions") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    meta = header.get("__metadata__") or {}
    return meta if isinstance(meta, dict) else None


def unreadable_reason(path: Path) -> str | None:
    """Why a file that no loader accepted cannot be read, when we can tell (empty, truncated safetensors)."""
    size = path.stat().st_size
    if size == 0:
        return f"{path}: the file is empty (0 bytes); it was not fully written, use another checkpoint"
    if path.suffix.lower() != ".safetensors":
        return None
    with open(path, "rb") as fh:
        head = fh.read(8)
        claimed = int.from_bytes(head, "little") + 8 if len(head) == 8 else 8
        text = fh.read(min(claimed - 8, 100_000_000))
    if len(head) < 8:
        return f"{path}: truncated safetensors file ({size} bytes, shorter than its 8-byte header size)"
    if not text.startswith(b"{"):
        return f"{path}: not a safetensors file (no JSON header after its first 8 bytes); check the file"
    if claimed > size:
        return f"{path}: truncated safetensors file ({size} bytes, its header needs {claimed}); copy or save it again"
    try:
        json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return f"{path}: damaged safetensors header (not valid JSON); save it again"
    return None


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
    except (KeyError, ValueError, TypeError, RecursionError, EntropyElboError) as err:
        raise CheckpointError(f"{path}: its metadata is damaged ({err}); re-save the checkpoint") from None
    try:
        state = load_file(path, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot read its tensors ({err}); the file is damaged or truncated") from None
    model = with_weights(build_checked(config, state, path), config, state, path)
    for name, tensor in model.state_dict().items():  # as loaded into the model's dtype (a float8 file's too)
        if tensor.is_floating_point() and not all_finite(tensor):
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or Inf; use an earlier checkpoint")
    check_variances(model, path)
    return model.to(device).eval(), extra


def check_variances(model: VAEBase, source: str | Path) -> None:
    """Refuse constant log-variances whose variance is zero or infinite in float32 (a non-positive variance)."""
    h = model.latent_dim
    names = stored_names(model)
    with torch.no_grad():
        found = {"encoder variance tau^2": model.encoder_log_var_constant, "prior variance A": model.prior_log_var}
        if model.decoder_variance != "network":
            device = next((p.device for p in model.parameters()), torch.device("cpu"))  # a live module may be on a GPU
            found["decoder variance sigma^2"] = model.decoder_log_var(torch.zeros(1, h, device=device))
    for what, log_var in found.items():
        if log_var is None:
            continue
        bad = ~(log_var.detach().double().abs() < LOG_VAR_LIMIT)
        if bad.any():
            flat = bad.reshape(-1)
            index = int(flat.nonzero()[0])
            value = float(log_var.detach().reshape(-1)[index])
            at = f" at index {index}" if flat.numel() > 1 else ""
            key = names.get(log_var.untyped_storage().data_ptr()) or planned_name(model, what) or what
            raise CheckpointError(
                f"{source}: tensor {key!r} holds log-variance {value:g}{at}, so its {what} is "
                f"{'zero' if value < 0 else 'infinite'} in float32 (|ln| must stay below {LOG_VAR_LIMIT:.1f}); "
                "use an earlier checkpoint" + (", or say how it is stored with --encoder-var-param" if
                                               what.startswith("encoder") else "")
            )


def stored_names(model: torch.nn.Module) -> dict[int, str]:
    """Parameter and buffer names by the address of their storage, so a view (a reshape) finds its name too; the
    file's own key where the model renamed it (the plain MLP keeps the file's tensors as weights.t0, t1, ...)."""
    file_keys = {f"weights.{safe}": key for key, safe in getattr(model, "_names", {}).items()}
    named = [*model.named_parameters(), *model.named_buffers()]
    return {t.untyped_storage().data_ptr(): file_keys.get(n, n) for n, t in reversed(named) if t.numel()}


def planned_name(model: torch.nn.Module, what: str) -> str | None:
    """The parameter a wrapped module's plan read a variance from (its Finding's name), where one did."""
    plan = getattr(model, "plan", None)
    finding = getattr(plan, "decoder" if what.startswith("decoder") else "encoder", None)
    name = getattr(finding, "name", None)
    return name if isinstance(name, str) and getattr(finding, "kind", None) != "fixed" else None


def with_weights(shell: VAEBase, config: ModelConfig, state: dict[str, torch.Tensor], path: Path) -> VAEBase:
    """The model on the meta device with the file's tensors assigned as its weights (cast to the model's dtypes, as
    a copy into it would be): nothing is initialised at random only to be overwritten. A model left holding a
    meta tensor the file does not fill is built for real and loaded into instead."""
    own = shell.state_dict()
    fitted = {k: v.to(own[k].dtype) if k in own and v.dtype != own[k].dtype else v for k, v in state.items()}
    model = shell
    try:
        shell.load_state_dict(fitted, strict=True, assign=True)
        if any(t.is_meta for t in (*shell.parameters(), *shell.buffers())):
            model = build_model(config, source=str(path))
            model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the saved architecture ({first})") from None
    return model


def build_checked(config: ModelConfig, state: dict[str, torch.Tensor], path: Path) -> VAEBase:
    """The model a checkpoint's config names, built on the meta device (no memory, no initialisation) and
    refused unless its shapes are those of the file's tensors: a damaged or crafted config cannot make us
    allocate more. `with_weights` gives it the file's tensors."""
    try:
        shell = model_shell(config)
        shapes = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    except EntropyElboError as err:
        raise CheckpointError(f"{path}: its metadata is damaged ({err}); re-save the checkpoint") from None
    for name in sorted(set(shapes) | set(state)):
        got = tuple(state[name].shape) if name in state else "missing"
        if got != shapes.get(name, "not in the model"):
            layers = (f"channels={config.extra['channels']}" if "channels" in config.extra else
                      f"hidden={list(config.hidden)}")
            raise CheckpointError(f"{path}: tensor {name!r} has shape {got} but its saved config ({config.kind}, "
                                  f"data_dim={config.data_dim}, latent_dim={config.latent_dim}, {layers}) needs "
                                  f"{shapes.get(name, 'no such tensor')}; the file is damaged")
    check_model_size(config, source=str(path))  # as build_model refuses it
    return shell


def native_introspection(path: Path, model: VAEBase) -> Introspection:
    """Our own files need no guessing: everything is in the saved config."""
    config = model.config
    lsig = constant_log_sigma2(model).exp().reshape(-1)
    value = float(lsig[0]) if lsig.numel() == 1 else lsig.tolist()
    dec = Finding(model.decoder_variance, "log_sigma2", "logvar", "entropy-elbo checkpoint: stored in its config",
                  "none needed", value=value)
    const = model.encoder_log_var_constant
    enc = (Finding("constant", "log_tau2", "logvar", "entropy-elbo linear VAE: one tau per latent", "none needed",
                   value=const.detach().double().exp().tolist()) if const is not None else
           Finding("head", "fc_var", "logvar", "entropy-elbo checkpoint: its log-variance head", "none needed"))
    return Introspection(str(path), "entropy-elbo", config.kind, config.latent_dim, config.data_dim, dec, enc)


class NativeSource(Source):
    """Our own files: opened whole by `load_checkpoint` before any reader runs, so no raw format and no guessing."""

    name = "entropy-elbo checkpoint"

    def recognise(self, raw: RawCheckpoint, options: LoadOptions) -> bool:
        return False  # never read as a RawCheckpoint: `opens` takes the file first

    def opens(self, path: Path, options: LoadOptions) -> bool:
        """Whether `path` is one of ours and no --model class replaces its saved architecture."""
        return path.is_file() and is_native(path) and options.model is None

    def load(self, path: Path, device: torch.device | str) -> tuple[VAEBase, dict[str, object]]:
        """The saved model and its metadata, with an Introspection that needs no guess."""
        model, meta = load_checkpoint(path, device=device)
        meta["introspection"] = native_introspection(path, model)
        return model, meta
