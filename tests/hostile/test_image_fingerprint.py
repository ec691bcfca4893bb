"""An image folder's fingerprint covers the images it reads, not the run's own files beside them (issue 26,
family 5): a checkpoint saved inside the image folder it trained on made `--resume` refuse ("the data changed")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hostile_helpers import invoke

from entropy_elbo.runs import data_changes, fingerprint

Image = pytest.importorskip("PIL.Image")


def images(folder: Path, n: int = 8) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_only_the_images_read_count_in_the_fingerprint(tmp_path: Path) -> None:
    folder = images(tmp_path / "imgs")
    before = fingerprint(str(folder))
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "model.run").mkdir()
    (folder / "notes.txt").write_text("not an image")
    assert data_changes(before, fingerprint(str(folder))) == ([], False)
    (folder / "3.png").write_bytes((folder / "3.png").read_bytes() + b"\0")  # an image the reader reads changes
    size = before["size"]
    assert data_changes(before, fingerprint(str(folder)))[0] == [f"size {size} -> {size + 1} bytes",
                                                                 "file names or sizes differ"]


def test_a_run_saved_inside_its_image_folder_resumes(tmp_path: Path) -> None:
    folder = images(tmp_path / "imgs")
    train = ["train", "conv", "--image-size", "8", "--batch-size", "4", "--hidden", "4", "--latents", "2", "--quiet"]
    first = invoke([*train, "--data", folder, "--out", folder / "model.safetensors", "--epochs", "1"])
    assert first.exit_code == 0, first.stderr
    again = invoke(["train", "conv", "--resume", folder / "model.safetensors", "--epochs", "2", "--quiet"])
    assert again.exit_code == 0, again.stderr
    assert "epoch 2" in again.stderr or "epoch 2" in again.stdout
