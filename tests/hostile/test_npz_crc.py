"""A .npz member is read to its end through zipfile, so its CRC-32 is checked: a flip in the data together with
flips that enlarge the central directory's recorded sizes used to load changed numbers (numpy stops reading at the
array's last byte, before zipfile compares the CRC)."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entropy_elbo.data import open_array
from entropy_elbo.errors import EntropyElboError

X = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)  # what test_fuzz_loaders saves
WORK = Path(tempfile.mkdtemp(prefix="entropy-elbo-npz-"))


def valid() -> bytes:
    np.savez(WORK / "valid.npz", x=X)
    return (WORK / "valid.npz").read_bytes()


VALID = valid()


def flipped(spots: list[tuple[int, int]]) -> Path:
    out = bytearray(VALID)
    for pos, bit in spots:
        out[pos] ^= 1 << bit
    path = WORK / "case.npz"
    path.write_bytes(bytes(out))
    return path


def test_the_layout_the_offsets_below_assume() -> None:
    info = zipfile.ZipFile(WORK / "valid.npz").getinfo("x.npy")
    central = VALID.index(b"PK\x01\x02")
    assert info.header_offset == 0 and 35 <= 183 < 35 + info.compress_size  # 183: a byte of the array's data
    assert (central + 20, central + 24) == (275, 279)  # 276 and 280: the recorded compressed and full sizes


@pytest.mark.parametrize("bits", [(0, 0, 0), (7, 5, 5), (3, 1, 6)])
def test_a_data_flip_with_enlarged_recorded_sizes_is_refused_naming_the_member(bits: tuple[int, int, int]) -> None:
    path = flipped(list(zip((183, 276, 280), bits, strict=True)))
    with pytest.raises(EntropyElboError) as caught:
        np.concatenate(list(open_array(path)))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: member 'x.npy' ") and "damaged" in message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 7)), min_size=1, max_size=4))
def test_flips_anywhere_are_refused_or_load_the_original_numbers(spots: list[tuple[int, int]]) -> None:
    path = flipped(spots)
    try:
        got = np.concatenate(list(open_array(path)))
    except EntropyElboError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        return
    np.testing.assert_array_equal(got.reshape(X.shape), X)  # the zip's CRC guards the data
