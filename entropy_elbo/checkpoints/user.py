"""The user's own model class: `--model FILE.py:NAME` or `module:NAME`, built with `--model-kwargs`, loaded strictly."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from entropy_elbo.checkpoints.guard import model_code
from entropy_elbo.checkpoints.raw import RawCheckpoint
from entropy_elbo.checkpoints.source import Built, Source
from entropy_elbo.errors import CheckpointError, first_line, parse_json

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.options import LoadOptions


def parse_kwargs(text: str | dict | None) -> dict[str, object]:
    """--model-kwargs JSON -> dict."""
    if text is None or isinstance(text, dict):
        return dict(text or {})
    value = parse_json(text, "--model-kwargs")
    if not isinstance(value, dict):
        raise CheckpointError(f"--model-kwargs: expected a JSON object, got {type(value).__name__}")
    return value


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise CheckpointError(f"--model {path}: no such file")
    name = f"entropy_elbo_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CheckpointError(f"--model {path}: cannot import it as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.resolve().parent)  # as `python FILE.py` would: a sibling module imports
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except BaseException as err:  # noqa: BLE001 -- the user's code: any failure becomes one line naming the file
        sys.modules.pop(name, None)
        if isinstance(err, KeyboardInterrupt):
            raise
        raise CheckpointError(f"--model {path}: importing it raised {type(err).__name__}: {first_line(err)} "
                              f"(its folder {folder} was on the import path)") from None
    finally:
        if added:
            sys.path.remove(folder)
    return module


def _import_module(name: str) -> ModuleType:
    """Import a module as `python -m` would: the working directory first on the import path (an installed
    `entropy-elbo` script does not have it there), so `--model mypkg.models:NAME` works from mypkg's folder."""
    here = os.getcwd()
    added = here not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(name)
    except BaseException as err:  # noqa: BLE001
        if isinstance(err, KeyboardInterrupt):
            raise
        raise CheckpointError(f"--model {name}: importing module {name!r} raised {type(err).__name__}: "
                              f"{first_line(err)} (searched the working directory {here} first, as python -m "
                              "does, then the installed packages)") from None
    finally:
        if added:
            sys.path.remove(here)


def build_user_model(spec: str, kwargs: dict[str, object]) -> nn.Module:
    """Import NAME from FILE.py or a module and call it (a class or a factory) with kwargs."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise CheckpointError(f"--model {spec}: expected FILE.py:NAME or package.module:NAME")
    module = _import_file(Path(where)) if where.endswith(".py") else _import_module(where)
    factory = getattr(module, name, None)
    if factory is None or not callable(factory):
        raise CheckpointError(f"--model {spec}: {where} defines no class or function {name!r}")
    with model_code(name, "__init__", f" (--model {spec}, --model-kwargs {json.dumps(kwargs)}); check --model-kwargs",
                    CheckpointError):
        model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"--model {spec}: {name} returned a {type(model).__name__}, not a torch nn.Module")
    return model


MODEL_ADVICE = "the weights do not fit the --model class: {}; check --model and --model-kwargs"


def load_strict(model: nn.Module, state: dict[str, Tensor], prefix: str, source: str,
                advice: str = MODEL_ADVICE) -> None:
    """Load `state` into `model` strictly, with or without the stripped wrapper prefix; a mismatch names keys."""
    model.load_state_dict(fitting_state(model, state, prefix, source, advice), strict=True)


def build_to_fit(build: Callable[[], nn.Module], state: dict[str, Tensor], source: str, advice: str) -> nn.Module:
    """build() a peer library's model from a config from the wild, and load `state` into it strictly; the model is
    first built on the meta device (shapes only, no memory) and checked against `state`, so a tiny config asking
    for huge layers is refused, naming the mismatch, before anything is allocated. The weights are then assigned to
    that shell (no random initialisation, no second copy of float32 weights); a module holding buffers outside its
    state_dict (left on the meta device) is built again for real and loaded into instead."""
    with torch.device("meta"):
        shell = build()
    fitted = fitting_state(shell, state, "", source, advice)
    want = shell.state_dict()
    shell.load_state_dict({k: v.to(want[k].dtype) if v.is_floating_point() and want[k].is_floating_point() else v
                           for k, v in fitted.items()}, strict=True, assign=True)
    if not any(t.is_meta for t in (*shell.parameters(), *shell.buffers())):
        return shell
    model = build()
    load_strict(model, state, "", source, advice)
    return model


def fitting_state(model: nn.Module, state: dict[str, Tensor], prefix: str, source: str, advice: str) -> dict:
    """`state` (or it with the wrapper prefix put back) when its keys and shapes are exactly `model`'s, else a
    CheckpointError naming the missing, unexpected and misshapen keys; reads only shapes (meta models work)."""
    want = model.state_dict()
    variants = [state]
    if prefix:
        variants.append({prefix + k: v for k, v in state.items()})
    best = max(variants, key=lambda s: len(set(s) & set(want)))
    missing = [k for k in want if k not in best]
    unexpected = [k for k in best if k not in want]
    shapes = [f"{k} {tuple(best[k].shape)} vs {tuple(want[k].shape)}" for k in want
              if k in best and tuple(best[k].shape) != tuple(want[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append(f"shape (file vs model) {'; '.join(shapes[:3])}")
        raise CheckpointError(f"{source}: {advice.format('; '.join(parts))}")
    return best


class UserSource(Source):
    """--model FILE.py:NAME: the user's own class, built with --model-kwargs, loaded strictly with any format's
    weights (the format's own source still says what its loss implies)."""

    name = "user class (--model)"

    def recognise(self, raw: RawCheckpoint, options: LoadOptions) -> bool:
        return options.model is not None

    def build(self, raw: RawCheckpoint, options: LoadOptions, source: str) -> Built:
        module = build_user_model(options.model, parse_kwargs(options.model_kwargs))
        load_strict(module, raw.state, raw.prefix, source)
        state = {k: v for k, v in module.state_dict().items() if isinstance(v, Tensor)}
        return Built(module, f"user class {options.model}", state, own_code=True)
