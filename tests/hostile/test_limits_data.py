"""Data that every reading command refuses the same way: empty CSV cells, values too large to use, and paths
that are not regular files (a FIFO would block, a device would read without end). Issue 14, sections 3 and 4."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from hostile_helpers import D, assert_user_error, invoke

from entropy_elbo.data import open_array
from entropy_elbo.errors import DataError


@pytest.fixture(autouse=True)
def no_hang():
    """A reader that blocks on a FIFO fails the test after 20 s instead of hanging the suite."""

    def stop(*_: object) -> None:
        raise TimeoutError("blocked reading a path that is not a regular file")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------------------------------- CSV header


@pytest.mark.parametrize(("row", "col", "header"), [(0, 0, False), (0, 2, False), (5, 1, False), (0, 2, True),
                                                    (9, 0, True)])
def test_an_empty_cell_is_refused_at_its_line_and_column(tmp_path, row, col, header):
    table = np.arange(30, dtype=np.float32).reshape(10, 3).astype(str).tolist()
    table[row][col] = ""
    lines = (["alpha,beta,gamma"] if header else []) + [",".join(r) for r in table]
    path = tmp_path / "gap.csv"
    path.write_text("\n".join(lines) + "\n")
    line = row + 1 + header  # 1-based line of the file
    with pytest.raises(DataError, match=rf"^{path}: .*empty cell at line {line}, column {col}; fix it$"):
        open_array(path)


@pytest.mark.parametrize("first", ["x1,x2,label", ",a,b", "a,,c", "  name , other ,z"])
def test_a_first_line_of_names_is_a_header_and_is_skipped(tmp_path, first):
    rows = np.random.default_rng(1).normal(size=(7, 3)).astype(np.float32)
    path = tmp_path / "named.csv"
    path.write_text(first + "\n" + "\n".join(",".join(f"{v:.9g}" for v in r) for r in rows) + "\n")
    np.testing.assert_array_equal(open_array(path), rows)


def test_a_first_line_mixing_names_and_numbers_is_data_and_refused(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("1.5,oops,2\n1,2,3\n")
    with pytest.raises(DataError, match="string 'oops' to float32 at line 1, column 1"):
        open_array(path)


# ---------------------------------------------------------------------------------------------- magnitude


def too_large(kit: Path, tmp: Path, value: float) -> Path:
    x = np.load(kit / "x.npy").astype(np.float64)
    x[7, 2] = value
    np.save(tmp / "big.npy", x)
    return tmp / "big.npy"


COMMANDS = {
    "estimate": ["estimate", "{k}/vae1.safetensors", "--data", "{x}", "--samples", "2"],
    "estimate-json": ["estimate", "{k}/vae1.safetensors", "--data", "{x}", "--json"],
    "collapse": ["collapse", "{k}/vae1.safetensors", "--data", "{x}"],
    "collapse-json": ["collapse", "{k}/vae1.safetensors", "--data", "{x}", "--json"],
    "compare": ["compare", "{k}/vae1.safetensors", "--data", "{x}", "--sizes", "10", "--repeats", "2"],
    "select": ["select", "--data", "{x}", "--latents", "1", "--quiet"],
    "train": ["train", "vae1", "--data", "{x}", "--out", "{t}/run", "--epochs", "1", "--quiet"],
    "train-scaled": ["train", "vae1", "--data", "{x}", "--scale", "standard", "--out", "{t}/run", "--epochs", "1"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("scale", [1.01, 1e20])
def test_every_command_refuses_a_value_whose_square_overflows_a_row(kit, tmp_path, command, scale):
    limit = np.sqrt(float(np.finfo(np.float32).max) / D)  # independent: sum of D squares reaches float32's max
    data = too_large(kit, tmp_path, scale * limit)
    args = [a.format(k=kit, x=data, t=tmp_path) for a in COMMANDS[command]]
    assert_user_error(invoke(args), 1, str(data), "row 7, column 2", "overflows float32" if scale < 2
                      else "too large for float32")
    assert not (tmp_path / "run").exists()


def test_values_just_inside_the_limit_are_read(kit, tmp_path):
    limit = np.sqrt(float(np.finfo(np.float32).max) / D)
    x = open_array(too_large(kit, tmp_path, 0.99 * limit))
    from entropy_elbo.data import iter_batches

    assert np.concatenate(list(iter_batches(x, 16)))[7, 2] == np.float32(0.99 * limit)


# ---------------------------------------------------------------------------------------------- not regular files


def odd_paths(tmp: Path) -> dict[str, Path]:
    """A FIFO, /dev/zero and /dev/null behind links, named like data and like checkpoints."""
    out = {}
    for suffix in (".npy", ".csv", ".npz", ".safetensors", ".pt"):
        fifo = tmp / f"fifo{suffix}"
        os.mkfifo(fifo)
        out[f"fifo{suffix}"] = fifo
        for dev in ("zero", "null"):
            link = tmp / f"{dev}{suffix}"
            link.symlink_to(f"/dev/{dev}")
            out[link.name] = link
    return out


def test_fifos_and_devices_are_refused_before_reading_as_data_and_as_checkpoints(kit, tmp_path):
    for name, path in odd_paths(tmp_path).items():
        kind = "FIFO" if name.startswith("fifo") else "character device"
        ckpt = kit / "vae1.safetensors"
        for args in (["estimate", ckpt, "--data", path], ["collapse", ckpt, "--data", path],
                     ["select", "--data", path, "--quiet"], ["inspect", ckpt, "--data", path],
                     ["train", "vae1", "--data", path, "--out", tmp_path / "r", "--quiet"],
                     ["estimate", path, "--data", kit / "x.npy"], ["inspect", path],
                     ["collapse", path, "--data", kit / "x.npy"]):
            assert_user_error(invoke(args), 1, str(path), kind, "not a regular file")


# ---------------------------------------------------------------------------------------------- compressed input


@pytest.fixture
def small_free(monkeypatch):
    """Inflation is judged from 256 KiB on (instead of 100 MiB), so that small bombs show the mechanism fast."""
    from entropy_elbo import limits

    monkeypatch.setattr(limits, "INFLATE_FREE", 2**18)


def gz(path: Path, head: bytes, zeros: bytes, repeats: int) -> Path:
    import gzip

    with gzip.open(path, "wb") as f:
        f.write(head)
        for _ in range(repeats):
            f.write(zeros)
    return path


def test_a_gzipped_csv_that_inflates_like_a_bomb_is_refused_while_reading(tmp_path, monkeypatch):
    from entropy_elbo.data import text

    monkeypatch.setattr(text, "TEXT_CHECK", 2**20)  # judged every MiB of text (8 MiB outside tests)
    path = gz(tmp_path / "zeros.csv.gz", b"", b"0,0,0,0\n" * 8192, 128)  # 8 MiB of text from about 20 KiB
    with pytest.raises(DataError, match=r"zeros\.csv\.gz: the gzipped text read so far inflates from .* KiB to "
                                        r".* more than 100-fold"):
        open_array(path)
    rows = np.random.default_rng(0).normal(size=(4000, 4)).astype(np.float32)  # real data: 2-3 fold
    text = "\n".join(",".join(f"{v:.9g}" for v in r) for r in rows).encode()
    np.testing.assert_array_equal(open_array(gz(tmp_path / "real.csv.gz", text, b"", 0)), rows)


def test_a_gzipped_idx_file_whose_dims_inflate_like_a_bomb_is_refused_before_reading(tmp_path, small_free):
    import struct

    n = 2048  # 2048 images of 64 x 64 ubyte: 8 MiB of zeros from about 8 KiB
    path = gz(tmp_path / "train-images-idx3-ubyte.gz", struct.pack(">BBBBIII", 0, 0, 8, 3, n, 64, 64), bytes(2**20),
              8)
    with pytest.raises(DataError, match=r"idx dims \(2048, 64, 64\) inflates from .* KiB to 8.0 MiB, more than "
                                        "100-fold"):
        open_array(path)
