"""Property-based fuzzing of the loaders: random bytes, truncations and bit flips of valid files.

The only allowed outcomes are a correct load or our own error type. A correct load is checked against an
independent decoding of the same bytes (numpy.frombuffer at the header's offsets; Python's csv and float).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from hostile_helpers import byte_mutations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entropy_elbo.checkpoints import load_model, save_checkpoint
from entropy_elbo.data import iter_batches, open_array
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models import ModelConfig, build_model

EXAMPLES = int(os.environ.get("ENTROPY_ELBO_FUZZ_EXAMPLES", "150"))  # per loader; raise it for a long campaign
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORK = Path(tempfile.mkdtemp(prefix="entropy-elbo-fuzz-"))
X = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)


def valid_bytes(suffix: str) -> bytes:
    path = WORK / f"valid{suffix}"
    if suffix == ".npy":
        np.save(path, X)
    elif suffix == ".npz":
        np.savez(path, x=X)
    elif suffix == ".csv":
        np.savetxt(path, X, delimiter=",", fmt="%.6g", header="a,b,c", comments="")
    else:
        torch.manual_seed(0)
        save_checkpoint(build_model(ModelConfig(kind="vae1", data_dim=3, latent_dim=2, hidden=(4,))), path)
    return path.read_bytes()


VALID = {s: valid_bytes(s) for s in (".npy", ".npz", ".csv", ".safetensors")}


def mutations(suffix: str) -> st.SearchStrategy[tuple[bytes, str, set[int]]]:
    """(bytes, kind, flipped byte positions): random bytes, a truncation, or 1-4 bit flips of the valid file."""
    return byte_mutations(VALID[suffix], 2 * len(VALID[suffix]))


def load_table(data: bytes, suffix: str) -> np.ndarray | None:
    """open_array + every batch, or None on our own error (anything else fails the test)."""
    path = WORK / f"case{suffix}"
    path.write_bytes(data)
    try:
        return np.concatenate(list(iter_batches(open_array(path), 4)))
    except EntropyElboError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        return None


@FUZZ
@given(mutations(".npy"))
def test_npy(case: tuple[bytes, str, set[int]]) -> None:
    data, kind, flipped = case
    got = load_table(data, ".npy")
    if kind == "truncated":
        assert got is None  # every strict prefix of a .npy is refused
    header = VALID[".npy"].index(b"\n") + 1  # the data region starts after the header's newline
    if got is not None and kind == "flipped" and min(flipped) >= header:
        want = np.frombuffer(data[header:], dtype="<f4").reshape(X.shape)  # the same bytes, decoded by hand
        np.testing.assert_array_equal(got, want)
    if got is not None:
        assert np.isfinite(got).all() and got.dtype == np.float32


@FUZZ
@given(mutations(".npz"))
def test_npz(case: tuple[bytes, str, set[int]]) -> None:
    data, kind, _ = case
    got = load_table(data, ".npz")
    if kind == "truncated":
        assert got is None
    if got is not None:  # a zip's CRC guards the data, so a load that succeeds holds the original numbers
        assert np.isfinite(got).all()
        np.testing.assert_array_equal(got, X.reshape(got.shape) if got.size == X.size else got)


def parse_csv(data: bytes) -> np.ndarray | None:
    """An independent reading of a numeric CSV with one optional header line: Python's csv module and float."""
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
        rows = [r for r in rows if r]
        if rows and not all(_is_float(v) for v in rows[0]):
            rows = rows[1:]
        return np.array([[float(v) for v in r] for r in rows], dtype=np.float32)
    except (ValueError, UnicodeDecodeError, csv.Error):
        return None


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


@FUZZ
@given(mutations(".csv"))
def test_csv(case: tuple[bytes, str, set[int]]) -> None:
    data, kind, _ = case
    got = load_table(data, ".csv")
    if got is None:
        return
    assert np.isfinite(got).all() and got.ndim == 2 and len(got) > 0
    want = parse_csv(data)
    if want is not None and want.shape == got.shape and "_" not in data.decode("utf-8-sig", "replace"):
        np.testing.assert_array_equal(got, want)
    if kind == "truncated" and len(got) > 1:  # a prefix: every row but the last is an original row as written
        written = np.loadtxt(io.StringIO(VALID[".csv"].decode()), delimiter=",", skiprows=1, dtype=np.float32)
        np.testing.assert_array_equal(got[:-1], written[: len(got) - 1])


REFERENCE = load_model(WORK / "valid.safetensors").model.state_dict()
HEADER = json.loads(VALID[".safetensors"][8 : 8 + int.from_bytes(VALID[".safetensors"][:8], "little")])
DATA_START = 8 + int.from_bytes(VALID[".safetensors"][:8], "little")


@FUZZ
@given(mutations(".safetensors"))
def test_native_checkpoint(case: tuple[bytes, str, set[int]]) -> None:
    data, kind, flipped = case
    path = WORK / "case.safetensors"
    path.write_bytes(data)
    try:
        loaded = load_model(path)
    except EntropyElboError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        return
    assert kind != "truncated" and kind != "random"
    state = loaded.model.state_dict()
    if "entropy-elbo checkpoint" not in loaded.source:  # a flip in the format tag: now a plain safetensors file,
        assert all(torch.isfinite(t).all() for t in state.values())  # read by introspection from its shapes
        return
    for name, tensor in state.items():
        assert torch.isfinite(tensor).all()
        if min(flipped) >= DATA_START:  # header untouched: decode the tensor's bytes by hand at its offsets
            start, end = HEADER[name]["data_offsets"]
            want = np.frombuffer(data[DATA_START + start : DATA_START + end], dtype="<f4").reshape(tensor.shape)
            np.testing.assert_array_equal(tensor.numpy(), want)
        elif not any(p >= DATA_START for p in flipped):  # only the header changed: the numbers cannot have
            torch.testing.assert_close(tensor, REFERENCE[name], rtol=0, atol=0)
