"""Property-based fuzzing of the loaders for checkpoints from the wild: random bytes, truncations and bit flips of
a torch.save'd state_dict (.pt), a Lightning .ckpt, a plain safetensors file, a TorchScript archive and a pythae
folder's model.pt and model_config.json.

Allowed outcomes: our own error type (one line naming the file), or a load whose model then gives finite
estimates on real rows or our own error. A flip inside a plain safetensors file's tensor bytes must load exactly
those bytes (decoded here by hand with numpy at the header's offsets).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from hostile_helpers import byte_mutations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wild_kit import D, build_wild

from entropy_elbo.checkpoints import LoadOptions, load_model
from entropy_elbo.elbo import estimate
from entropy_elbo.errors import EntropyElboError

EXAMPLES = int(os.environ.get("ENTROPY_ELBO_FUZZ_EXAMPLES", "150")) // 3  # per target; TorchScript loads are slow
FUZZ = settings(max_examples=max(EXAMPLES, 1), deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORK = Path(tempfile.mkdtemp(prefix="entropy-elbo-fuzz-wild-"))
(WORK / "valid").mkdir()
FILES = build_wild(WORK / "valid")
X = np.random.default_rng(1).normal(size=(6, D)).astype(np.float32)
TARGETS = {"pt": FILES["pt"], "ckpt": FILES["ckpt"], "safetensors": FILES["safetensors"], "script": FILES["script"],
           "pythae_model": FILES["pythae"] / "model.pt", "pythae_config": FILES["pythae"] / "model_config.json"}
VALID = {name: path.read_bytes() for name, path in TARGETS.items()}
PYTHAE_OPTIONS = {"decoder_variance": 0.5}  # pythae's MSE models need sigma^2 for the Monte Carlo ELBO


def mutations(name: str) -> st.SearchStrategy[tuple[bytes, str, set[int]]]:
    """(bytes, kind, flipped positions): random bytes, a strict prefix, or 1-4 bit flips of the valid file."""
    return byte_mutations(VALID[name], min(2 * len(VALID[name]), 4096))


def write_case(name: str, data: bytes) -> Path:
    """The mutated file in place of the valid one; returns what to hand to load_model (a file or the folder)."""
    if name.startswith("pythae"):
        folder = WORK / "case_pythae"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(FILES["pythae"], folder)
        (folder / TARGETS[name].name).write_bytes(data)
        return folder
    path = WORK / f"case_{name}{TARGETS[name].suffix}"
    path.write_bytes(data)
    return path


def outcome(name: str, data: bytes):  # noqa: ANN201
    """Load the mutated file: the LoadedModel, or None after our own one-line error naming it."""
    path = write_case(name, data)
    options = LoadOptions(**(PYTHAE_OPTIONS if name.startswith("pythae") else {}), trust_code=name == "script")
    try:
        return load_model(path, options=options)
    except EntropyElboError as err:
        assert "\n" not in str(err) and str(path) in str(err), str(err)
        return None


def check_loaded(loaded) -> None:  # noqa: ANN001
    """A loaded model gives finite estimates on real rows, or our own error."""
    try:
        est = estimate(loaded.model, [X], samples=2, generator=torch.Generator().manual_seed(0))
    except EntropyElboError as err:
        assert "\n" not in str(err)
        return
    assert est.mc_elbo is not None and math.isfinite(est.mc_elbo)
    assert est.entropy_elbo is None or math.isfinite(est.entropy_elbo)


def fuzz(name: str, case: tuple[bytes, str, set[int]]):  # noqa: ANN201
    data, kind, _ = case
    loaded = outcome(name, data)
    if loaded is not None:
        assert kind != "random" or name == "pythae_config", "random bytes loaded as a checkpoint"
        check_loaded(loaded)
    return loaded


@FUZZ
@given(mutations("pt"))
def test_state_dict_pt(case: tuple[bytes, str, set[int]]) -> None:
    loaded = fuzz("pt", case)
    if case[1] == "truncated":
        assert loaded is None  # a zip without its central directory never loads


@FUZZ
@given(mutations("ckpt"))
def test_lightning_ckpt(case: tuple[bytes, str, set[int]]) -> None:
    loaded = fuzz("ckpt", case)
    if case[1] == "truncated":
        assert loaded is None


@FUZZ
@given(mutations("script"))
def test_torchscript(case: tuple[bytes, str, set[int]]) -> None:
    loaded = fuzz("script", case)
    if case[1] == "truncated":
        assert loaded is None


@FUZZ
@given(mutations("pythae_model"))
def test_pythae_model_pt(case: tuple[bytes, str, set[int]]) -> None:
    fuzz("pythae_model", case)


@FUZZ
@given(mutations("pythae_config"))
def test_pythae_model_config(case: tuple[bytes, str, set[int]]) -> None:
    fuzz("pythae_config", case)


SAFE = VALID["safetensors"]
DATA_START = 8 + int.from_bytes(SAFE[:8], "little")
HEADER = json.loads(SAFE[8:DATA_START])
REFERENCE = torch.load(FILES["pt"], weights_only=True)


@FUZZ
@given(mutations("safetensors"))
def test_plain_safetensors(case: tuple[bytes, str, set[int]]) -> None:
    data, kind, flipped = case
    loaded = fuzz("safetensors", case)
    if kind == "truncated":
        assert loaded is None
    if loaded is None or kind != "flipped" or min(flipped) < DATA_START:
        return
    for name, info in HEADER.items():  # the header is untouched: every tensor is the file's bytes at its offsets
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        want = np.frombuffer(data[DATA_START + start: DATA_START + end], dtype="<f4").reshape(info["shape"])
        got = loaded.model.tensor(name).detach().numpy()  # the plain MLP read from shapes keeps each tensor
        np.testing.assert_array_equal(got, want, err_msg=name)
        if not any(DATA_START + start <= p < DATA_START + end for p in flipped):
            np.testing.assert_array_equal(got, REFERENCE[name].numpy(), err_msg=name)
