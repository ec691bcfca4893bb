"""The table of checkpoint sources is complete: every source module's `Source` is registered in `SOURCES`, and
each raw format the readers can return belongs to exactly one source (the one whose loss says what it implies)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import torch
from safetensors.torch import save_file

import entropy_elbo.checkpoints as checkpoints
from entropy_elbo.checkpoints.mlp import MLPSource
from entropy_elbo.checkpoints.raw import RAW_FORMATS
from entropy_elbo.checkpoints.source import Source
from entropy_elbo.checkpoints.sources import SOURCES, home, read_checkpoint

PACKAGE = Path(checkpoints.__file__).parent


def defined_sources() -> set[type]:
    """Every Source subclass defined in a module of the checkpoints package."""
    found = set()
    for info in pkgutil.iter_modules([str(PACKAGE)]):
        module = importlib.import_module(f"entropy_elbo.checkpoints.{info.name}")
        found |= {c for _, c in inspect.getmembers(module, inspect.isclass)
                  if issubclass(c, Source) and c is not Source and c.__module__ == module.__name__}
    return found


def assigned_formats() -> set[str]:
    """The format strings the package's code gives a RawCheckpoint: its first argument, `_raw`'s, or `.fmt = `."""
    found = set()
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("RawCheckpoint", "_raw") \
                    and node.args and isinstance(node.args[0], ast.Constant):
                found.add(node.args[0].value)
            if isinstance(node, ast.Assign) and any(getattr(t, "attr", getattr(t, "id", None)) == "fmt"
                                                    for t in node.targets) and isinstance(node.value, ast.Constant):
                found.add(node.value.value)
    return found


def test_every_source_module_is_registered_once() -> None:
    registered = [type(s) for s in SOURCES]
    assert len(registered) == len(set(registered))
    assert set(registered) == defined_sources()
    assert {"native", "torchfiles", "pythae", "autoencoder_kl", "vanilla", "user", "mlp"} == {
        c.__module__.rsplit(".", 1)[-1] for c in registered}


def test_each_raw_format_maps_to_exactly_one_source() -> None:
    for fmt in RAW_FORMATS:
        owners = [type(s).__name__ for s in SOURCES if fmt in s.formats]
        assert len(owners) == 1, f"raw format {fmt!r} belongs to {owners}"
    assert {f for s in SOURCES for f in s.formats} == set(RAW_FORMATS)
    assert assigned_formats() == set(RAW_FORMATS), "a reader returns a format no source reads, or the list is stale"


def test_the_plain_mlp_source_is_the_last_resort() -> None:
    assert isinstance(SOURCES[-1], MLPSource)


def test_files_read_land_at_their_source(tmp_path: Path) -> None:
    state = {"encoder.weight": torch.randn(2, 4), "fc_var.weight": torch.randn(2, 4),
             "decoder.weight": torch.randn(4, 2)}
    torch.save(state, tmp_path / "plain.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "global_step": 3,
                "pytorch-lightning_version": "2.0"}, tmp_path / "run.ckpt")
    save_file(state, tmp_path / "w.safetensors")
    for name, fmt in (("plain.pt", "state_dict"), ("run.ckpt", "lightning"), ("w.safetensors", "safetensors")):
        raw = read_checkpoint(tmp_path / name)
        assert raw.fmt == fmt
        assert type(home(raw)).__name__ == "TorchFileSource"
