"""The paper's real data in its own formats (MNIST idx, SUSY .csv.gz) and scikit-learn's bundled sets, each read
back against an independent reading: struct + gzip by hand, numpy's own text parser, scikit-learn's arrays."""

import gzip
import json
import struct
import sys

import numpy as np
import pytest
from sklearn import datasets

from entropy_elbo.data import load_image_folder, open_array, resolve_data
from entropy_elbo.data.bundled import BUNDLED, load_bundled
from entropy_elbo.errors import DataError


def write_idx(path, values: bytes, type_code: int, dims: tuple[int, ...], gz: bool) -> None:
    """An idx file as LeCun's page describes it: 0, 0, type code, ndim, big-endian uint32 dims, the values."""
    raw = bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + values
    path.write_bytes(gzip.compress(raw) if gz else raw)


def by_hand(path) -> np.ndarray:
    """Unsigned-byte images read with struct, one pixel at a time, as pixels / 255 (independent of ours)."""
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    assert magic == 0x0803
    pixels = struct.unpack(f"{n * rows * cols}B", raw[16:])
    return np.array([[[pixels[(i * rows + r) * cols + c] / 255 for c in range(cols)] for r in range(rows)]
                     for i in range(n)])


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "t10k-images.idx3-ubyte"])
def test_mnist_idx_images_read_as_pixels_over_255(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    path = tmp_path / name
    write_idx(path, images.tobytes(), 0x08, (6, 28, 28), gz=name.endswith(".gz"))
    x = open_array(path)
    assert x.shape == (6, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], by_hand(path), atol=1e-7)
    assert x.min() >= 0.0 and x.max() <= 1.0


def test_idx_big_endian_floats_and_tables(tmp_path):
    values = np.random.default_rng(1).normal(size=(5, 3))
    path = tmp_path / "features.idx2-double"
    write_idx(path, struct.pack(">15d", *values.ravel()), 0x0E, (5, 3), gz=False)
    np.testing.assert_array_equal(open_array(path), values.astype(np.float32))  # no / 255 for non-byte types


def error_of(path) -> str:
    with pytest.raises(DataError) as info:
        open_array(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_idx_errors_are_one_line(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte"
    write_idx(p, bytes(7 * 4 * 4), 0x08, (8, 4, 4), gz=False)  # one image short
    assert error_of(p) == (f"{p}: idx dims (8, 4, 4) of uint8 need 128 data bytes, the file holds 112; "
                           "download the file again")
    write_idx(p, bytes(8 * 4 * 4 + 1), 0x08, (8, 4, 4), gz=False)
    assert error_of(p).endswith("need 128 data bytes, the file holds more; download the file again")
    p.write_bytes(b"\x00\x00\x07\x03" + bytes(12))
    assert error_of(p) == (f"{p}: not an idx file (magic bytes 00000703, expected 0000 then a type code "
                           "08/09/0b/0c/0d/0e and 1-4 dims); pass MNIST's unmodified idx file")
    p.write_bytes(b"\x00\x00\x08\x03" + bytes(4))
    assert error_of(p) == f"{p}: idx header cut short (8 bytes, 3 dims need 16); download the file again"
    write_idx(p, bytes(0), 0x08, (0, 28, 28), gz=False)
    assert error_of(p) == f"{p}: idx dims (0, 28, 28) hold no data; pass a non-empty file"
    write_idx(p, bytes(0), 0x08, (2**32 - 1, 2**32 - 1, 2**16), gz=False)
    assert error_of(p).startswith(f"{p}: idx dims (4294967295, 4294967295, 65536) needs ")
    write_idx(p, bytes(16), 0x08, (1, 4, 4), gz=True)  # gzipped under the unzipped name
    assert error_of(p) == (f"{p}: gzip-compressed, but its name does not end in .gz; rename it to "
                           "train-images-idx3-ubyte.gz")
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(labels, bytes(range(10)), 0x08, (10,), gz=True)
    assert error_of(labels) == (f"{labels}: an idx1 file holds 10 labels, not images; pass the images file "
                                "(e.g. train-images-idx3-ubyte.gz)")
    cut = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(cut, bytes(range(256)) * 8, 0x08, (8, 16, 16), gz=True)
    cut.write_bytes(cut.read_bytes()[:-12])
    assert error_of(cut).startswith(f"{cut}: corrupt gzip (")


def test_susy_csv_gz_drops_the_label_column(tmp_path):
    rng = np.random.default_rng(2)
    table = np.column_stack([rng.integers(0, 2, 40), rng.normal(size=(40, 18))])  # label in column 0, as in SUSY
    path = tmp_path / "SUSY.csv.gz"
    with gzip.open(path, "wt") as f:
        np.savetxt(f, table, delimiter=",", fmt="%.18e")  # UCI's own number format
    x, source = resolve_data(str(path), drop_column=0)
    with gzip.open(path, "rt") as f:
        expected = np.loadtxt(f, delimiter=",", dtype=np.float32)[:, 1:]  # numpy's own reading
    assert x.shape == (40, 18) and "column 0 dropped" in source
    np.testing.assert_array_equal(x, expected)
    bad = tmp_path / "broken.csv.gz"
    bad.write_bytes(path.read_bytes()[:100])
    assert error_of(bad).startswith(f"{bad}: corrupt gzip (")
    plain = tmp_path / "plain.csv.gz"
    plain.write_text("1,2\n3,4\n")
    assert error_of(plain).startswith(f"{plain}: corrupt gzip (Not a gzipped file")


@pytest.mark.parametrize("name", list(BUNDLED))
def test_bundled_sets_match_scikit_learn(name):
    ours, source = resolve_data(name)
    theirs = getattr(datasets, BUNDLED[name][0])().data
    assert ours.dtype == np.float32 and f"'{name}'" in source
    if name == "digits":
        assert ours.shape == (1797, 1, 8, 8) and "pixels / 16" in source
        np.testing.assert_allclose(ours.reshape(1797, 64), theirs / 16, atol=1e-7)
    else:
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_bundled_sets_need_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    with pytest.raises(DataError) as info:
        load_bundled("digits")
    assert str(info.value) == ("digits: scikit-learn's bundled data sets need scikit-learn; "
                               "pip install 'entropy-elbo[datasets]'")
    with pytest.raises(DataError, match="apply to files, not named data sets"):
        resolve_data("breast_cancer", drop_column=0)


def cli(*args: str) -> str:
    from click.testing import CliRunner

    from entropy_elbo.cli import main

    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_mnist_preset_trains_on_the_idx_file_and_estimate_reads_it_as_the_pixels_read_by_hand(tmp_path):
    images = np.random.default_rng(3).integers(0, 256, size=(40, 8, 8), dtype=np.uint8)
    idx = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(idx, images.tobytes(), 0x08, (40, 8, 8), gz=True)
    npy = tmp_path / "by_hand.npy"
    np.save(npy, by_hand(idx).reshape(40, 64))
    ckpt = tmp_path / "mnist.safetensors"
    cli("train", "vae1", "--preset", "fig1b", "--data", str(idx), "--epochs", "2", "--batch-size", "20",
        "--samples", "2", "--out", str(ckpt), "--quiet")
    ours, theirs = (json.loads(cli("estimate", str(ckpt), "--data", str(p), "--samples", "3", "--json"))
                    for p in (idx, npy))
    assert ours["n"] == 40 and ours["d"] == 64
    assert ours["entropy_elbo"] == pytest.approx(theirs["entropy_elbo"], rel=1e-6)
    assert ours["mc_elbo"] == pytest.approx(theirs["mc_elbo"], rel=1e-5)


def test_train_on_the_digits_by_name_sees_scikit_learns_pixels(tmp_path):
    run = tmp_path / "digits"
    cli("train", "vae1", "--data", "digits", "--epochs", "1", "--batch-size", "600", "--samples", "1",
        "--latents", "2", "--out", str(run), "--quiet")
    data = json.loads((run / "run.json").read_text())["data"]
    assert data["shape"] == [1797, 64] and "scikit-learn's 'digits' data" in data["source"]
    out = json.loads(cli("estimate", str(run / "model.safetensors"), "--data", "digits", "--samples", "2", "--json"))
    assert out["n"] == 1797 and out["d"] == 64


def celeba_like(folder, count: int = 3):
    """JPEGs of CelebA's aligned size, 178x218: red inside the centred 148x148 square, blue outside."""
    from PIL import Image

    folder.mkdir()
    for i in range(count):
        img = Image.new("RGB", (178, 218), (0, 0, 255))
        img.paste((255, 0, 0), (15, 35, 163, 183))  # torchvision's CenterCrop(148) box: round((178-148)/2) = 15, ...
        img.save(folder / f"{i:06d}.jpg", quality=100, subsampling=0)
    return folder


def test_celeba_folder_centre_crop_148_then_resize_keeps_only_the_centre(tmp_path):
    folder = celeba_like(tmp_path / "img_align_celeba")
    x = load_image_folder(folder, 64, crop=148)
    assert x.shape == (3, 3, 64, 64)
    inner = x[:, :, 2:-2, 2:-2]  # away from the crop's edge, where JPEG ringing may leak a little blue
    assert inner[:, 0].min() > 0.95 and inner[:, 2].max() < 0.05
    uncropped = load_image_folder(folder, 64)  # shorter side to 64, centre 64x64: the blue bands stay in
    assert uncropped[:, 2, :3].min() > 0.9
    small = tmp_path / "small"
    small.mkdir()
    from PIL import Image

    Image.new("RGB", (100, 120)).save(small / "a.jpg")
    with pytest.raises(DataError) as info:
        load_image_folder(small, 64, crop=148)
    assert str(info.value) == (f"{small / 'a.jpg'}: the image is 100x120 pixels, smaller than the centre crop of "
                               "148; pass a smaller --crop or remove the image")


def test_conv_vae_trains_on_the_digits_as_one_channel_8x8_images(tmp_path):
    run = tmp_path / "conv"
    cli("train", "conv", "--data", "digits", "--hidden", "4,8", "--latents", "2", "--epochs", "1",
        "--batch-size", "900", "--out", str(run), "--quiet")
    config = json.loads(json.loads((run / "run.json").read_text())["model_config"])
    assert config["data_dim"] == 64 and config["extra"]["in_channels"] == 1 and config["extra"]["image_size"] == 8


def test_celeba_preset_crops_148_then_resizes(tmp_path):
    folder = celeba_like(tmp_path / "img_align_celeba", count=4)
    run = tmp_path / "celeba"
    cli("train", "conv", "--preset", "celeba", "--data", str(folder), "--image-size", "8", "--hidden", "4",
        "--latents", "2", "--epochs", "1", "--batch-size", "2", "--out", str(run), "--quiet")
    stored = json.loads((run / "run.json").read_text())
    assert stored["settings"]["crop"] == 148 and stored["settings"]["holdout"] == 0.4  # App. D.4's 60/40 split
    assert stored["data"]["shape"] == [2, 3, 8, 8] and "centre 148x148 resized" in stored["data"]["source"]


def test_susy_preset_trains_on_the_first_rows_without_the_label(tmp_path):
    rng = np.random.default_rng(4)
    table = np.column_stack([rng.integers(0, 2, 40), rng.normal(size=(40, 18))])
    path = tmp_path / "SUSY.csv.gz"
    with gzip.open(path, "wt") as f:
        np.savetxt(f, table, delimiter=",", fmt="%.18e")
    run = tmp_path / "susy"
    cli("train", "vae1", "--preset", "susy", "--data", str(path), "--rows", "30", "--hidden", "8,4", "--epochs", "1",
        "--out", str(run), "--quiet")
    stored = json.loads((run / "run.json").read_text())
    assert stored["data"]["shape"] == [15, 18]  # the first 30 rows, label dropped, split 50/50 as App. D.4
    assert "its first 30 of 40 rows" in stored["data"]["source"] and stored["settings"]["scale"] == "minmax"
    run2 = tmp_path / "all"
    cli("train", "vae1", "--preset", "susy", "--data", str(path), "--hidden", "8,4", "--epochs", "1",
        "--out", str(run2), "--quiet")  # the preset's 2.5 million rows: this file's 40 are all of them
    assert json.loads((run2 / "run.json").read_text())["data"]["shape"] == [20, 18]


def test_select_and_inspect_read_a_bundled_set_as_its_array_saved_by_hand(tmp_path):
    npy = tmp_path / "diabetes.npy"
    np.save(npy, datasets.load_diabetes().data.astype(np.float32))  # scikit-learn's rows, written by hand
    args = ["--latents", "1,2", "--samples", "2", "--batch-size", "50", "--window", "3", "--tail", "2", "--json"]
    by_name, by_file = (json.loads(cli("select", "--data", d, *args)) for d in ("diabetes", str(npy)))
    assert by_name["rows"] == 442 and by_name["segments"] == by_file["segments"]
    run = tmp_path / "d"
    cli("train", "vae1", "--data", "diabetes", "--hidden", "8", "--epochs", "1", "--out", str(run), "--quiet")
    ckpt = str(run / "model.safetensors")
    assert json.loads(cli("inspect", ckpt, "--data", "diabetes", "--json")) == json.loads(
        cli("inspect", ckpt, "--data", str(npy), "--json"))


def test_estimate_reads_an_image_folder_with_the_crop_and_size_it_was_trained_on(tmp_path):
    folder = celeba_like(tmp_path / "img_align_celeba", count=4)
    run = tmp_path / "celeba"
    cli("train", "conv", "--preset", "celeba", "--data", str(folder), "--image-size", "8", "--hidden", "4",
        "--latents", "2", "--epochs", "1", "--batch-size", "2", "--out", str(run), "--quiet")
    npy = tmp_path / "cropped.npy"
    np.save(npy, load_image_folder(folder, 8, crop=148))
    ckpt = str(run / "model.safetensors")
    ours, theirs = (json.loads(cli("estimate", ckpt, "--data", str(d), "--samples", "3", "--rows", "all", "--json"))
                    for d in (folder, npy))
    assert ours["n"] == 4 and ours["d"] == 3 * 8 * 8
    assert ours["entropy_elbo"] == pytest.approx(theirs["entropy_elbo"], rel=1e-9)
    assert ours["mc_elbo"] == pytest.approx(theirs["mc_elbo"], rel=1e-9)
