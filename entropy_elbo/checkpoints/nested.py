"""A state_dict nested under other keys at any depth (`{'model_states': {'net': state_dict}, 'optim': ...}`), found
by its tensors: a dict of layer tensors (some key a layer's weight or bias), named by its dotted path. One is
taken with a note; several are a one-line choice naming `--checkpoint-key`. An optimizer's state (per-parameter
dicts of `exp_avg`, `step`) holds tensors too but no layer weights, so it is never a candidate.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from entropy_elbo.checkpoints.introspect import is_layer_key
from entropy_elbo.errors import CheckpointError

MAX_DEPTH = 8  # dicts nested deeper than this are not searched (a file cannot make the search run long)


def is_state_dict(obj: object) -> bool:
    """A dict of tensors by string name, some of them a layer's weight or bias."""
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        return False
    tensors = [k for k, v in obj.items() if isinstance(v, Tensor)]
    return len(tensors) >= len(obj) - sum(v is None for v in obj.values()) and any(map(is_layer_key, tensors))


def state_dicts(obj: object, path: str = "", depth: int = 0) -> list[tuple[str, dict | nn.Module]]:
    """Every state_dict (or module) inside `obj`, by dotted path, not searching inside one once found."""
    if depth > MAX_DEPTH or not isinstance(obj, dict):
        return []
    found: list[tuple[str, dict | nn.Module]] = []
    for key, value in obj.items():
        where = f"{path}.{key}" if path else str(key)
        if isinstance(value, nn.Module) or is_state_dict(value):
            found.append((where, value))
        elif isinstance(value, dict):
            found.extend(state_dicts(value, where, depth + 1))
    return found


def at_key(obj: dict, key: str, path: Path) -> dict | nn.Module:
    """What `--checkpoint-key a.b.c` names inside the file's dict (a key may itself hold dots)."""
    node: object = obj
    rest = key
    while rest:
        if not isinstance(node, dict):
            break
        match = next((k for k in sorted(map(str, node), key=len, reverse=True)
                      if rest == k or rest.startswith(f"{k}.")), None)
        if match is None:
            break
        node, rest = next(v for k, v in node.items() if str(k) == match), rest[len(match) + 1:]
    if rest or not (isinstance(node, nn.Module) or is_state_dict(node)):
        found = ", ".join(w for w, _ in state_dicts(obj)[:6]) or "none"
        raise CheckpointError(f"{path}: --checkpoint-key {key}: no state_dict there (state_dicts in the file: "
                              f"{found}); pass one of them")
    return node


def find_nested(obj: dict, path: Path, key: str | None) -> tuple[str, dict | nn.Module] | None:
    """The state_dict that `key` names, or the only one nested in `obj` (None when there is none); several: an
    error naming each with `--checkpoint-key`."""
    if key is not None:
        return key, at_key(obj, key, path)
    found = state_dicts(obj)
    if len(found) > 1:
        listed = ", ".join(w for w, _ in found[:6]) + (", ..." if len(found) > 6 else "")
        raise CheckpointError(f"{path}: holds {len(found)} state_dicts ({listed}); pick one with --checkpoint-key "
                              f"{found[0][0]}")
    return found[0] if found else None
