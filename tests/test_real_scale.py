"""benchmarks/real_scale.py's files, small: each writer's file is read by the loader its preset uses, with the values
the writer put there (MNIST pixels / 255, SUSY without its label column, CelebA's centre 148 crop at 64 pixels)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from script_helpers import load_script

from entropy_elbo.data import load_image_folder, resolve_data


@pytest.fixture(scope="module")
def real_scale():  # noqa: ANN201
    return load_script("benchmarks/real_scale.py")


def test_mnist_idx_files_read_as_pixels_over_255(real_scale, tmp_path: Path) -> None:
    path = real_scale.write_mnist(tmp_path, 25, np.random.default_rng(1))
    with gzip.open(path) as f:
        raw = f.read()
    assert raw[:4] == b"\x00\x00\x08\x03" and np.frombuffer(raw[4:16], ">u4").tolist() == [25, 28, 28]
    x, _ = resolve_data(str(path))
    expected = np.frombuffer(raw[16:], np.uint8).reshape(25, 1, 28, 28) / 255.0
    assert x.shape == (25, 1, 28, 28) and np.allclose(x, expected, atol=1e-7) and 0 < x.mean() < 0.5
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz") as f:
        labels = f.read()
    assert labels[:8] == b"\x00\x00\x08\x01" + (25).to_bytes(4, "big") and len(labels) == 8 + 25


def test_susy_csv_gz_reads_without_its_label_column(real_scale, tmp_path: Path) -> None:
    path = real_scale.write_susy(tmp_path, 120, np.random.default_rng(2), chunk=50)
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")  # (120, 19), the label first
    assert table.shape == (120, 19) and set(np.unique(table[:, 0])) <= {0.0, 1.0}
    x, source = resolve_data(str(path), drop_column=0)
    assert x.shape == (120, 18) and np.allclose(x, table[:, 1:], rtol=1e-6) and "column 0 dropped" in source


def test_celeba_jpegs_read_at_the_presets_crop(real_scale, tmp_path: Path) -> None:
    folder = real_scale.write_celeba(tmp_path, 3, np.random.default_rng(3))
    assert sorted(p.name for p in folder.iterdir()) == ["000001.jpg", "000002.jpg", "000003.jpg"]
    x = load_image_folder(folder, 64, 148)
    assert x.shape == (3, 3, 64, 64) and x.min() >= 0.0 and x.max() <= 1.0 and x.std() > 0.01
