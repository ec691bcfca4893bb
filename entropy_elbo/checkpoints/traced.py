"""Heads found by the computation (issue #22): a class with no encode() is read through what its forward returns.

Where a class has no `encode()` and its `encoder` sub-module (if any) returns bare features (a tensor the
decoder cannot take, whole or halved), `forward` is run on the probe rows and its output read by meaning: a
dict with one mean-like and one variance-like key (`mu`/`logvar`, `loc`/`scale`; the key names the variance's
parameterization), a tuple of tensors or distributions (`(recon, mu, logvar)`, `(recon, z, mu, logvar)`: the
sample is the output that changes between two calls), or a distribution. Forward hooks then find which
sub-modules produced the mean and the variance; where `encoder` followed by those heads gives them exactly, the
encoder path is used (it runs no decoder), else forward itself. The found path is said in a note; a choice the
output leaves open stops with the candidates and the flag that picks one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from entropy_elbo.checkpoints.guard import model_code
from entropy_elbo.checkpoints.outputs import expand, sample_first
from entropy_elbo.errors import CheckpointError, ModelError

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.adapters import ModulePlan

MEAN_KEYS = ("mu", "mean", "z_mean", "z_mu", "mu_z", "loc", "q_mu", "qz_mean", "posterior_mean", "latent_mean")
VAR_KEYS = {"logvar": "logvar", "log_var": "logvar", "z_log_var": "logvar", "log_variance": "logvar",
            "logvar_z": "logvar", "q_logvar": "logvar", "log_std": "logstd", "logstd": "logstd",
            "log_sigma": "logstd", "z_log_std": "logstd", "std": "std", "sigma": "std", "scale": "std",
            "z_std": "std", "var": "var", "variance": "var", "z_var": "var"}
PREFIX = "forward["


def _call(module: nn.Module, x: Tensor) -> object:
    with torch.no_grad(), model_code(type(module).__name__, "forward", where=f" on a batch of shape "
                                     f"{tuple(x.shape)}"):
        return module(x)


def reader(module: nn.Module, via: str) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """encode for via = "forward[k1,k2]": forward(x)'s mean and variance by their dict keys or tuple indices."""
    keys = via[len(PREFIX):-1].split(",")

    def encode(x: Tensor) -> tuple[Tensor, Tensor]:
        out = module(x)
        if isinstance(out, dict):
            return out[keys[0]], out[keys[1]]
        flat = expand(out, "forward")
        return flat[int(keys[0])], flat[int(keys[1])]

    return encode


def _dict_keys(out: dict, h_ok: Callable[[Tensor], bool]) -> tuple[str, str, str]:
    """(mean key, variance key, its parameterization) of forward's dict; ambiguous or missing: one line."""
    tensors = {k: v for k, v in out.items() if isinstance(k, str) and isinstance(v, Tensor) and h_ok(v)}
    means = [k for k in tensors if k.lower() in MEAN_KEYS]
    variances = [k for k in tensors if k.lower() in VAR_KEYS]
    if len(means) == 1 and len(variances) == 1:
        return means[0], variances[0], VAR_KEYS[variances[0].lower()]
    raise CheckpointError(f"the model has no encode(), and forward() returns a dict whose latent-shaped entries "
                          f"({', '.join(tensors) or 'none'}) hold {len(means)} mean-like key(s) ({', '.join(means)}) "
                          f"and {len(variances)} variance-like key(s) ({', '.join(variances)}): the mean and the "
                          "variance cannot be told; pass --model FILE.py:NAME whose encode(x) returns (mean, "
                          "variance), with --encoder-var-param P")


def _tuple_pair(module: nn.Module, out: object, x: Tensor) -> tuple[int, int]:
    """Indices of mean and variance among forward's tensors (distributions expanded): the two (B, H) outputs
    that are not the reconstruction, after dropping a sample that changes between calls."""
    flat = [t for t in expand(out, "forward")] if isinstance(out, (tuple, list, torch.distributions.Distribution)) \
        else []
    rows = [i for i, t in enumerate(flat) if isinstance(t, Tensor) and t.dim() == 2 and t.shape[0] == x.shape[0]
            and t[0].numel() != x[0].numel()]
    shapes = sorted({tuple(flat[i].shape) for i in rows})
    for shape in shapes:
        same = [i for i in rows if tuple(flat[i].shape) == shape]
        if len(same) == 2:
            return same[0], same[1]
        if len(same) == 3:
            sample = sample_first(lambda same=same: [expand(_call(module, x), "forward")[i] for i in same],
                                  [flat[i] for i in same])
            if sample is not None:
                rest = [same[j] for j in range(3) if j != sample]
                return rest[0], rest[1]
    shown = [tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in flat]
    raise CheckpointError(f"the model has no encode(), and forward() returns {shown or type(out).__name__}: the mean "
                          "and the variance cannot be told apart (two latent-shaped outputs beside the "
                          "reconstruction, or three with the sample first, are read); pass --model FILE.py:NAME whose "
                          "encode(x) returns (mean, variance), with --encoder-var-param P")


def traced_via(module: nn.Module, via: str, probe: Tensor, decodes: Callable[[int], bool]) -> tuple[str, str] | None:
    """(encode path, note) for a class with no encode() whose encoder gives bare features, else None."""
    if hasattr(module, "encode") or type(module).forward is nn.Module.forward or isinstance(
            module, torch.jit.ScriptModule):
        return None
    encoder = getattr(module, "encoder", None)
    if isinstance(encoder, nn.Module):
        try:
            with torch.no_grad():
                feats = encoder(probe)
        except Exception:  # noqa: BLE001 -- the encoder alone cannot run on the rows: read forward instead
            feats = None
        if not isinstance(feats, Tensor) or feats.dim() != 2 or decodes(feats.shape[1]) or (
                feats.shape[1] % 2 == 0 and decodes(feats.shape[1] // 2)):
            return None
    elif via != "forward" or _plain_pair(_call(module, probe), probe):
        return None  # forward() returning (recon, mean, variance) tensors: adapters' own forward reading
    return read_forward(module, probe)


def _plain_pair(out: object, x: Tensor) -> bool:
    """A tuple of tensors with exactly two latent-shaped ones beside the reconstruction (no distributions)."""
    if not isinstance(out, (tuple, list)) or not all(isinstance(t, Tensor) for t in out):
        return False
    rows = [tuple(t.shape) for t in out if t.dim() == 2 and t.shape[0] == x.shape[0] and t.shape != x.shape]
    return len(rows) == 2 and rows[0] == rows[1]


def read_forward(module: nn.Module, probe: Tensor) -> tuple[str, str]:
    """forward(probe)'s mean and variance by meaning, and the heads that produce them where hooks find them."""
    out = _call(module, probe)
    if isinstance(out, dict):
        mean_key, var_key, param = _dict_keys(out, lambda t: t.dim() == 2 and t.shape[0] == probe.shape[0])
        via, what = f"{PREFIX}{mean_key},{var_key}]", f"a dict: mean {mean_key!r}, variance {var_key!r} ({param})"
    else:
        i, j = _tuple_pair(module, out, probe)
        flat = expand(out, "forward")
        via, what = f"{PREFIX}{i},{j}]", f"{len(flat)} outputs: mean = output {i}, variance = output {j}"
    heads = _heads(module, probe, via)
    if heads is not None:
        return f"encoder+{heads[0]}+{heads[1]}", (f"heads found by the computation: forward() returns {what}; hooks "
                                                  f"trace them to encoder -> {heads[0]} and encoder -> {heads[1]}, "
                                                  "which give them exactly: read through those")
    return via, f"heads found by the computation: forward() returns {what}; read from forward() itself"


def _heads(module: nn.Module, probe: Tensor, via: str) -> tuple[str, str] | None:
    """The sub-modules producing forward's mean and variance, when encoder -> each of them reproduces them."""
    if not isinstance(getattr(module, "encoder", None), nn.Module):
        return None
    seen: dict[int, tuple[str, Tensor]] = {}  # the tensor is kept, so that its id is not reused during the call

    def record(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(_m: nn.Module, _i: object, out: object) -> None:  # returns None: the output stays the model's
            if isinstance(out, Tensor):
                seen.setdefault(id(out), (name, out))
        return hook

    handles = [sub.register_forward_hook(record(name)) for name, sub in module.named_modules()
               if name and "." not in name]
    try:
        with torch.no_grad():
            mean, var = reader(module, via)(probe)
    except (RuntimeError, ValueError, KeyError, IndexError, ModelError):
        return None
    finally:
        for handle in handles:
            handle.remove()
    names = tuple(seen[id(t)][0] if id(t) in seen else None for t in (mean, var))
    if names[0] is None or names[1] is None or "encoder" in names:
        return None
    try:
        with torch.no_grad():
            feats = module.encoder(probe)
            again = module.get_submodule(names[0])(feats), module.get_submodule(names[1])(feats)
    except Exception:  # noqa: BLE001 -- the heads do not take the encoder's output directly: read forward
        return None
    ok = all(isinstance(a, Tensor) and a.shape == b.shape and torch.equal(a, b)
             for a, b in zip(again, (mean, var), strict=True))
    return (names[0], names[1]) if ok else None


def keyed_param(plan: ModulePlan, flag: str | None) -> ModulePlan:
    """A variance read from forward()'s dict by a key that names its parameterization (log_std, scale, ...): the
    convention the data's scores start from, unless --encoder-var-param set it."""
    if flag or not plan.encode_via.startswith(PREFIX) or plan.encoder.kind != "output" or plan.dist:
        return plan
    key = plan.encode_via[len(PREFIX):-1].split(",")[1]
    param = VAR_KEYS.get(key.lower())
    if param is None or param == plan.encoder.param:
        return plan
    return replace(plan, encoder=replace(plan.encoder, param=param, evidence=f"forward() returns the variance under "
                                         f"the key {key!r}: read as a {param}"))
