"""Data files: opening, validation messages, streaming batches, scaling, splitting, images and saving."""

import os
import sys
import tempfile
import tracemalloc
import zipfile

import numpy as np
import pytest

from entropy_elbo.data import (
    Scaler,
    fit_scaler,
    iter_batches,
    load_image_folder,
    open_array,
    resolve_data,
    save_array,
    split_indices,
)
from entropy_elbo.errors import DataError


@pytest.fixture
def table() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(103, 5)).astype(np.float32)


def write_npy(tmp_path, x, name="x.npy"):
    path = tmp_path / name
    np.save(path, x)
    return path


def assert_data_error(path, match, **kwargs):
    """open_array(path) raises a one-line DataError naming the file and matching `match`."""
    with pytest.raises(DataError, match=match) as info:
        open_array(path, **kwargs)
    assert path.name in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- opening


def test_npy_is_memory_mapped_and_batches_are_bounded(tmp_path, table):
    x = open_array(write_npy(tmp_path, table))
    assert isinstance(x, np.memmap) and x.mode == "r"
    batches = list(iter_batches(x, 10))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert all(b.dtype == np.float32 and b.flags.c_contiguous and b.nbytes <= 10 * 5 * 4 for b in batches)
    assert all(not isinstance(b, np.memmap) for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), table)


def test_opening_and_streaming_a_large_npy_allocates_only_a_chunk(tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, np.ones((2_000, 2_500), dtype=np.float32))  # 20 MB on disk
    tracemalloc.start()
    try:
        x = open_array(path, drop_column=0)
        first = next(iter_batches(x, 10))
        peak_open = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        fit_scaler(x, "standard", batch_size=50)
        peak_fit = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert first.shape == (10, 2_499)
    assert peak_open < 1_000_000  # one 10-row chunk is 100 kB; the whole table would be 20 MB
    assert peak_fit < 5_000_000  # 50-row float64 chunks are 1 MB; the table in float64 would be 40 MB


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.bool_, np.float16, np.float64])
def test_numeric_dtypes_are_accepted_and_cast_to_float32(tmp_path, dtype):
    data = (np.arange(24).reshape(6, 4) % 3).astype(dtype)
    batches = list(iter_batches(open_array(write_npy(tmp_path, data)), 4))
    assert all(b.dtype == np.float32 for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), data.astype(np.float32))


def test_fortran_order_and_images(tmp_path):
    f = np.asfortranarray(np.arange(12.0).reshape(4, 3))
    np.testing.assert_array_equal(open_array(write_npy(tmp_path, f, "f.npy")), f)
    images = np.random.default_rng(1).random((7, 3, 4, 4)).astype(np.float32)
    x = open_array(write_npy(tmp_path, images, "img.npy"))
    assert [b.shape for b in iter_batches(x, 3)] == [(3, 3, 4, 4), (3, 3, 4, 4), (1, 3, 4, 4)]


@pytest.mark.parametrize("column", [0, -1, 4, 2, -3])
def test_drop_column_of_a_memmap_stays_on_disk(tmp_path, table, column):
    x = open_array(write_npy(tmp_path, table), drop_column=column)
    assert isinstance(x, np.memmap)
    np.testing.assert_array_equal(np.concatenate(list(iter_batches(x, 16))), np.delete(table, column, axis=1))


def test_npz_key_selection(tmp_path, table):
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    np.savez(one, data=table)
    np.savez_compressed(two, train=table, labels=np.arange(103)[:, None])
    np.testing.assert_array_equal(open_array(one), table)
    np.testing.assert_array_equal(open_array(two, key="train", drop_column=0), table[:, 1:])
    assert_data_error(two, r"holds arrays \['train', 'labels'\]; pass --key")
    assert_data_error(two, r"no array 'test'; keys are \['train', 'labels'\]", key="test")


def test_csv_with_and_without_header(tmp_path, table):
    plain, header, single = tmp_path / "plain.csv", tmp_path / "header.txt", tmp_path / "single.csv"
    np.savetxt(plain, table, delimiter=",", fmt="%.9g")
    np.savetxt(header, table, delimiter=",", fmt="%.9g", header="a,b,c,d,e", comments="")
    single.write_text("\ufeff1.5\n2.5\n-3\n", encoding="utf-8")  # a byte-order mark, as Excel writes
    np.testing.assert_array_equal(open_array(plain), table)
    np.testing.assert_array_equal(open_array(header, drop_column=0), table[:, 1:])
    np.testing.assert_array_equal(open_array(single), [[1.5], [2.5], [-3.0]])


def bad_files(tmp_path):
    """(path, expected message fragment, open_array kwargs) for every input open_array must refuse."""
    cases = []

    def add(name, match, content=None, array=None, **kwargs):
        path = tmp_path / name
        if array is not None:
            np.save(path, array, allow_pickle=True)
            path = path if path.suffix == ".npy" else path.with_suffix(path.suffix + ".npy")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        cases.append((path, match, kwargs))

    add("missing.npy", "no such file")
    (tmp_path / "folder.npy").mkdir()
    cases.append((tmp_path / "folder.npy", "is a folder", {}))
    add("data.parquet", "unsupported extension '.parquet'", content="x")
    add("text.npy", "not a .npy file", content="1,2,3\n4,5,6\n")
    add("empty.npy", "empty", content=b"")
    add("objects.npy", "dtype object is not real numeric", array=np.array([[{"a": 1}]], dtype=object))
    add("complex.npy", "complex128 is not real numeric", array=np.ones((3, 2), dtype=complex))
    add("strings.npy", "<U1 is not real numeric", array=np.array([["a", "b"]]))
    add("records.npy", "not real numeric", array=np.zeros((3, 2), dtype=[("a", "f4"), ("b", "i4")]))
    add("norows.npy", r"\(0, 4\) has 0 rows", array=np.zeros((0, 4)))
    add("nocols.npy", r"\(4, 0\) has no features", array=np.zeros((4, 0)))
    add("vector.npy", r"1-d array of shape \(5,\); reshape it to \(N, 1\)", array=np.zeros(5))
    add("scalar.npy", "0 dims", array=np.float32(1.0))
    add("cube.npy", "3 dims; need", array=np.zeros((2, 3, 4)))
    add("key.npy", "--key 'x' applies to .npz files only", array=np.zeros((2, 2)), key="x")
    add("dropimg.npy", "--drop-column needs an", array=np.zeros((2, 3, 4, 4)), drop_column=0)
    add("dropout.npy", r"cannot drop column 5 of 5 columns; pick one in \[-5, 5\)", array=np.zeros((2, 5)),
        drop_column=5)
    add("dropone.npy", "cannot drop column 0 of 1 columns", array=np.zeros((2, 1)), drop_column=0)
    # A header promising 1000 float64 values, followed by far fewer bytes.
    full = tmp_path / "full.npy"
    np.save(full, np.zeros((100, 10)))
    add("truncated.npy", "truncated .npy", content=full.read_bytes()[:500])
    add("zipped.npy", "it is a zip; rename it to .npz", content=b"PK\x03\x04" + b"\0" * 40)
    add("text.npz", r"not a .npz \(zip\) archive", content="1,2\n")
    with zipfile.ZipFile(tmp_path / "notnpz.npz", "w") as z:
        z.writestr("readme.npy", "hello, not an array")
    cases.append((tmp_path / "notnpz.npz", "member 'readme' is not a numpy array", {}))
    np.savez(tmp_path / "objects.npz", a=np.array([None, 1], dtype=object))
    cases.append((tmp_path / "objects.npz", "holds Python objects", {}))
    add("ragged.csv", "number of columns changed from 3 to 2 at line 3", content="1,2,3\n1,2,3\n4,5\n")
    add("words.csv", "string 'three' to float32 at line 3, column 0", content="a,b\n1,2\nthree,4\n")
    add("late.csv", "string 'x' to float32 at line 4, column 1", content="1,2\n3,4\n5,6\n7,x\n")
    add("raggedhead.csv", "changed from 3 to 2 at line 4", content="a,b,c\n1,2,3\n1,2,3\n4,5\n")
    add("headeronly.csv", "has 0 rows", content="a,b,c\n")
    add("binary.csv", "not a text file", content=b"\xff\xfe\x00\x81\x93" * 10)
    return cases


def test_every_bad_input_raises_a_one_line_data_error_naming_the_file(tmp_path):
    for path, match, kwargs in bad_files(tmp_path):
        assert_data_error(path, match, **kwargs)


# ---------------------------------------------------------------------------------------------- batches


def test_nan_and_inf_name_the_source_row_and_column(tmp_path, table):
    bad = table.copy()
    bad[57, 3] = np.nan
    bad[80, 1] = np.inf
    x = open_array(write_npy(tmp_path, bad))
    with pytest.raises(DataError, match=r"^susy\.npy: row 57, column 3 holds a non-finite value nan; clean"):
        list(iter_batches(x, 16, source="susy.npy"))
    with pytest.raises(DataError, match="row 80, column 1 holds a non-finite value inf"):
        list(iter_batches(x, 16, indices=np.array([3, 80, 57])))


def test_float64_overflow_to_float32_is_reported():
    x = np.ones((4, 2))
    x[2, 1] = 1e300
    with pytest.raises(DataError, match="row 2, column 1 holds a value 1e.300 is too large for float32"):
        list(iter_batches(x, 3))


def test_nan_in_images_names_its_position():
    x = np.zeros((3, 3, 2, 2), dtype=np.float32)
    x[1, 2, 0, 1] = np.nan
    with pytest.raises(DataError, match=r"row 1, position \(2, 0, 1\)"):
        list(iter_batches(x, 2))


def test_indices_order_is_kept_on_a_memmap(tmp_path, table):
    x = open_array(write_npy(tmp_path, table))
    idx = np.random.default_rng(3).permutation(103)[:50]
    idx[5] = idx[6]  # a repeated row is allowed
    batches = list(iter_batches(x, 8, indices=idx))
    assert max(len(b) for b in batches) == 8
    np.testing.assert_array_equal(np.concatenate(batches), table[idx])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be a positive"),
        ({"batch_size": 4, "indices": np.array([0, 200])}, r"indices must lie in \[0, 103\)"),
        ({"batch_size": 4, "indices": np.array([[0]])}, "1-d integer array"),
    ],
)
def test_bad_batch_arguments(table, kwargs, match):
    with pytest.raises(DataError, match=match):
        list(iter_batches(table, **kwargs))


def test_transform_is_applied_per_batch(table):
    out = np.concatenate(list(iter_batches(table, 7, transform=lambda b: 2 * b + 1)))
    np.testing.assert_allclose(out, 2 * table + 1, rtol=1e-6)
    assert out.dtype == np.float32


# ---------------------------------------------------------------------------------------------- scaling


def test_fit_scaler_matches_numpy_on_the_whole_array(tmp_path):
    rng = np.random.default_rng(4)
    data = (rng.normal(size=(1001, 6)) * [1, 10, 1e-3, 5, 1, 1] + [0, 100, 5, -3, 1e4, 7]).astype(np.float32)
    data[:, 5] = 7.0  # a constant column
    x = open_array(write_npy(tmp_path, data))
    d64 = data.astype(np.float64)
    standard = fit_scaler(x, "standard", batch_size=37)
    np.testing.assert_allclose(standard.shift, d64.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(standard.scale[:5], d64.std(0)[:5], rtol=1e-10)
    minmax = fit_scaler(x, "minmax", batch_size=37)
    np.testing.assert_array_equal(minmax.shift, d64.min(0))
    scaled = np.concatenate(list(iter_batches(x, 100, transform=minmax)))
    np.testing.assert_allclose(scaled[:, :5], (d64 - d64.min(0))[:, :5] / np.ptp(d64, 0)[:5], atol=1e-6)
    np.testing.assert_array_equal(scaled[:, 5], 0.0)  # constant column: no division by zero
    round_trip_error = np.abs(minmax.inverse(scaled) - d64)  # float32 rounding of values in [0, 1]
    assert (round_trip_error <= 1e-6 * (np.ptp(d64, 0) + np.abs(d64).max(0))).all()


def test_fit_scaler_uses_only_the_given_rows(table):
    train, _ = split_indices(len(table), 0.3, seed=0)
    scaler = fit_scaler(table, "standard", batch_size=5, indices=train)
    np.testing.assert_allclose(scaler.shift, table[train].astype(np.float64).mean(0), rtol=1e-10)
    np.testing.assert_allclose(scaler.scale, table[train].astype(np.float64).std(0), rtol=1e-10)


def test_fit_scaler_other_kinds_and_errors(table):
    none = fit_scaler(table, "none")
    assert isinstance(none, Scaler)
    np.testing.assert_array_equal(none(table), table)
    with pytest.raises(DataError, match="unknown scaling 'zscore'"):
        fit_scaler(table, "zscore")
    bad = table.copy()
    bad[9, 2] = np.nan
    with pytest.raises(DataError, match="train.csv: row 9, column 2"):
        fit_scaler(bad, "minmax", source="train.csv")
    with pytest.raises(DataError, match="no rows to fit"):
        fit_scaler(table, "minmax", indices=np.array([], dtype=int))


# ---------------------------------------------------------------------------------------------- splitting


@pytest.mark.parametrize(("n", "holdout"), [(1000, 0.5), (1000, 0.25), (7, 0.0), (3, 0.9)])
def test_split_is_a_seeded_partition(n, holdout):
    train, held = split_indices(n, holdout, seed=5)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, held])), np.arange(n))
    assert len(held) == min(round(n * holdout), n - 1) and len(train) >= 1
    again = split_indices(n, holdout, seed=5)
    np.testing.assert_array_equal(train, again[0])
    if 0 < len(held) < n // 2:
        assert not np.array_equal(held, split_indices(n, holdout, seed=6)[1])


@pytest.mark.parametrize(("n", "holdout"), [(10, 1.0), (10, -0.1), (0, 0.5)])
def test_split_rejects_bad_arguments(n, holdout):
    with pytest.raises(DataError):
        split_indices(n, holdout, seed=0)


# ---------------------------------------------------------------------------------------------- images


def test_image_folder_resizes_crops_and_scales(tmp_path):
    from PIL import Image

    stripes = np.zeros((64, 128, 3), dtype=np.uint8)  # wide: red | green | blue, green past the centre crop
    stripes[:, :16, 0] = stripes[:, 16:112, 1] = stripes[:, 112:, 2] = 255
    Image.fromarray(stripes).save(tmp_path / "a_stripes.png")
    Image.new("L", (50, 90), color=51).save(tmp_path / "b_gray.jpg")
    Image.new("RGB", (20, 20), color=(255, 0, 0)).save(tmp_path / "c_red.BMP")
    (tmp_path / "notes.txt").write_text("not an image")
    x = load_image_folder(tmp_path, image_size=16)
    assert x.shape == (3, 3, 16, 16) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_allclose(x[0, 1], 1.0, atol=0.02)  # the centre crop keeps only green
    np.testing.assert_allclose(x[0, [0, 2]], 0.0, atol=0.02)
    np.testing.assert_allclose(x[1], 0.2, atol=0.02)  # gray 51/255 in all three channels
    np.testing.assert_allclose(x[2, 0], 1.0, atol=0.02)


def test_image_folder_errors(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="no .png/.jpg/.jpeg/.bmp images"):
        load_image_folder(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png: unreadable image"):
        load_image_folder(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        load_image_folder(tmp_path / "broken.png")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(DataError, match=r"pip install 'entropy-elbo\[images\]'"):
        load_image_folder(tmp_path)


# ---------------------------------------------------------------------------------------------- saving


@pytest.mark.parametrize("name", ["out.npy", "out.csv"])
def test_save_array_round_trip_leaves_no_temp_files(tmp_path, table, name):
    save_array(table, tmp_path / name)
    save_array(table, tmp_path / name)  # replacing an existing file
    np.testing.assert_array_equal(open_array(tmp_path / name), table)
    assert os.listdir(tmp_path) == [name]


def test_save_array_errors(tmp_path, table, monkeypatch):
    with pytest.raises(DataError, match="does not exist"):
        save_array(table, tmp_path / "nowhere" / "x.npy")
    with pytest.raises(DataError, match="use .npy or .csv"):
        save_array(table, tmp_path / "x.parquet")
    with pytest.raises(DataError, match=".csv needs an"):
        save_array(np.zeros((2, 3, 4, 4)), tmp_path / "x.csv")
    target = tmp_path / "keep.npy"
    save_array(table, target)

    def broken_save(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array_header_1_0", broken_save)
    with pytest.raises(DataError, match="keep.npy: could not be written"):
        save_array(np.zeros((2, 2)), target)
    assert os.listdir(tmp_path) == ["keep.npy"]
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(target), table)  # the old file is intact


def test_save_array_reports_a_folder_it_cannot_write(tmp_path, table, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(DataError, match="x.npy: folder .* is not writable"):
        save_array(table, tmp_path / "x.npy")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_save_array_unwritable_folder(tmp_path, table):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    with pytest.raises(DataError, match="is not writable"):
        save_array(table, folder / "x.npy")


# ---------------------------------------------------------------------------------------------- resolving


def test_resolve_data_synthetic_file_and_folder(tmp_path, table, monkeypatch):
    x, source = resolve_data("ppca", seed=3)
    assert x.shape == (20_000, 10) and "ppca" in source and "seed 3" in source
    path = write_npy(tmp_path, table)
    x, source = resolve_data(str(path), drop_column=0)
    assert isinstance(x, np.memmap) and x.shape == (103, 4)
    assert str(path) in source and "memory-mapped" in source and "column 0 dropped" in source
    from PIL import Image

    images = tmp_path / "faces"
    images.mkdir()
    Image.new("RGB", (70, 64)).save(images / "0.png")
    x, source = resolve_data(str(images))
    assert x.shape == (1, 3, 64, 64) and "image folder" in source


def test_resolve_data_errors(tmp_path):
    with pytest.raises(DataError, match=r"nope\.npy: no such file or folder.*manifold, ppca, ring, stream"):
        resolve_data(str(tmp_path / "nope.npy"))
    with pytest.raises(DataError, match="apply to files, not named data sets"):
        resolve_data("ring", key="x")
