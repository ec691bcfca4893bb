"""Every structure read from a file is walked with a bound (issue 26, family 3): Lightning hyper_parameters holding
one dict shared 60 levels deep (2^60 paths) ran past 60 s, and a dict holding itself ran past 60 s at 1.9 GB.
The mechanism is `walk.nested_items`: each dict once, a cycle refused, depth and dict count bounded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from process_kit import assert_one_line, cli
from safetensors.torch import load_file

from entropy_elbo.errors import EntropyElboError
from entropy_elbo.walk import MAX_DEPTH, nested_items

PEAK_MB, SECONDS = 500, 60  # the memory bound; the time bound of a whole process on a loaded machine


def shared_deep(levels: int) -> dict:
    d: dict = {"leaf": 1}
    for _ in range(levels):
        d = {"a": d, "b": d}
    return d


def self_holding() -> dict:
    d: dict = {"x": 1}
    d["self"] = d
    return d


def lightning(path: Path, kit: Path, hyper: dict) -> Path:
    state = {f"model.{k}": v for k, v in load_file(kit / "vae1.safetensors").items()}
    torch.save({"state_dict": state, "global_step": 1, "pytorch-lightning_version": "2.0",
                "hyper_parameters": hyper}, path)
    return path


def test_one_dict_shared_60_levels_deep_is_walked_once_per_dict(kit: Path, tmp_path: Path) -> None:
    ran = cli("inspect", lightning(tmp_path / "shared.ckpt", kit, shared_deep(60)), timeout=SECONDS)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.peak_mb < PEAK_MB
    print(f"shared 60 deep: peak {ran.peak_mb:.0f} MB, {ran.seconds:.1f} s")  # noqa: T201 -- figures for the issue


def test_a_dict_that_holds_itself_is_one_line(kit: Path, tmp_path: Path) -> None:
    path = lightning(tmp_path / "self.ckpt", kit, self_holding())
    ran = cli("inspect", path, timeout=SECONDS)
    assert_one_line(ran, "self.ckpt", "hyper_parameters", "'self'", "contains itself")
    assert ran.peak_mb < PEAK_MB
    print(f"self-holding: peak {ran.peak_mb:.0f} MB, {ran.seconds:.1f} s")  # noqa: T201


def test_the_walk_visits_each_dict_once_and_bounds_depth_and_size() -> None:
    assert len(list(nested_items(shared_deep(60), "hp"))) == 2 * 60 + 1  # keys a, b per level, then leaf
    deep: dict = {}
    inner = deep
    for _ in range(MAX_DEPTH + 1):
        inner["k"] = {}
        inner = inner["k"]
    with pytest.raises(EntropyElboError, match=rf"^hp: nests deeper than {MAX_DEPTH} levels"):
        list(nested_items(deep, "hp"))
    wide = {str(i): {} for i in range(50)}
    with pytest.raises(EntropyElboError, match=r"^hp: holds more than 40 dicts"):
        list(nested_items(wide, "hp", max_nodes=40))
    with pytest.raises(EntropyElboError, match=r"^hp: key 'self' holds a dict that contains itself"):
        list(nested_items(self_holding(), "hp"))
    sibling = {"x": 1}
    assert [k for k, _ in nested_items({"a": sibling, "b": sibling}, "hp")] == ["a", "x", "b"]  # seen: not again
