"""Tiny files and flags that declare huge work are refused in one line before anything big is allocated
(issue 14, section 4). Every hostile file is written here from its mechanism: a config whose layers the weights
do not have, a zip member that inflates far beyond its file, a stride-0 view over a small storage, an image header
that claims 400 million pixels, flags asking for more than the machine has.

All cases run in ONE fresh process (imports cost seconds on a busy machine); it records its peak resident set
after each case, so the test names the first case whose refusal came after a big allocation.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_helpers import config_with, resave

from entropy_elbo.checkpoints import save_checkpoint
from entropy_elbo.models import ModelConfig, build_model

PEAK_MB = 500  # the bound on the peak resident set before the error
BOMB = 128 * 2**20  # bytes a deflated member inflates to


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims width x height 8-bit grey pixels, with a token IDAT: PIL reads only the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
                     + chunk(b"IEND", b""))
    return path


def deflated(path: Path, members: dict[str, tuple[bytes, int]]) -> Path:
    """A zip whose members (head bytes, then that many zero bytes, streamed) are deflated, as numpy.savez_compressed
    writes them and torch.save never does."""
    zero = bytes(2**20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:  # zeros: about 230-fold
        for name, (head, zeros) in members.items():
            with zf.open(name, "w", force_zip64=zeros > 2**31) as f:
                f.write(head)
                for start in range(0, zeros, len(zero)):
                    f.write(zero[: min(len(zero), zeros - start)])
    return path


def npy_header(shape: tuple[int, ...]) -> bytes:
    """The .npy header numpy.save writes for a float32 array of `shape`."""
    import io

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return head.getvalue()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    d = tmp_path_factory.mktemp("huge")
    torch.manual_seed(0)
    small = build_model(ModelConfig(kind="vae1", data_dim=4, latent_dim=2, hidden=(8,)))
    save_checkpoint(small, d / "vae1.safetensors")
    conv = build_model(ModelConfig(kind="conv", data_dim=3 * 8 * 8, latent_dim=2,
                                   extra={"channels": [4], "in_channels": 3, "image_size": 8}))
    save_checkpoint(conv, d / "conv.safetensors")
    np.save(d / "x.npy", np.zeros((20, 4), np.float32))
    # 1. configs that ask for layers the file's weights do not have
    resave(d / "vae1.safetensors", d / "wide.safetensors", meta_change=config_with(d / "vae1.safetensors",
                                                                                   hidden=[4096] * 16))
    resave(d / "conv.safetensors", d / "convwide.safetensors",
           meta_change=config_with(d / "conv.safetensors", extra={"channels": [2048], "in_channels": 3,
                                                                  "image_size": 8}))
    # 2. a .pt whose 128 MiB storage is deflated to about 0.6 MB (streamed: never in memory); the 1 GiB
    #    example behaves the same (README gives its peak memory), only slower to write
    torch.save({"fc_mu.weight": torch.zeros(2, 2)}, d / "plain.pt")
    with zipfile.ZipFile(d / "plain.pt") as src:
        members = {i.filename: (src.read(i.filename), 0) for i in src.infolist()}
    storage = next(n for n in members if "/data/" in n and not n.endswith("/"))
    members[storage] = (b"", BOMB)
    deflated(d / "deflated.pt", members)
    # 3. a stride-0 view: 32 bytes of storage that read as 6 GiB
    torch.save({"fc_mu.weight": torch.zeros(1, 8).expand(200_000_000, 8), "fc_mu.bias": torch.zeros(8)},
               d / "expanded.pt")
    # 4. an .npz member inflating to 128 MiB from about 0.6 MB
    deflated(d / "bomb.npz", {"x.npy": (npy_header((BOMB // 16, 4)), BOMB)})
    # 5. a PNG of 20000 x 20000 pixels (a few hundred bytes); a normal image beside it for --image-size
    (d / "pngbomb").mkdir()
    png_header_only(d / "pngbomb" / "a.png", 20_000, 20_000)
    (d / "images").mkdir()
    from PIL import Image

    Image.new("RGB", (16, 16), (10, 200, 30)).save(d / "images" / "a.png")
    # 6. a pythae folder (written by pythae itself) whose model_config.json asks for 4096 x 4096 inputs: pythae's
    #    default networks would hold 8.6e9 weights; its 4-input weights are what the file has
    import pythae.models as pm

    pm.VAE(pm.VAEConfig(input_dim=(4,), latent_dim=2)).save(str(d / "pythae"))
    config = json.loads((d / "pythae" / "model_config.json").read_text())
    (d / "pythae" / "model_config.json").write_text(json.dumps({**config, "input_dim": [4096, 4096]}))
    cases = {
        "config-16x4096": ["estimate", d / "wide.safetensors", "--data", d / "x.npy"],
        "conv-2048-channels": ["inspect", d / "convwide.safetensors"],
        "deflated-pt": ["inspect", d / "deflated.pt"],
        "stride0-view-6GiB": ["inspect", d / "expanded.pt"],
        "npz-member": ["estimate", d / "vae1.safetensors", "--data", d / "bomb.npz"],
        "png-20000x20000": ["train", "conv", "--data", d / "pngbomb", "--out", d / "r1", "--quiet"],
        "image-size-100000": ["train", "conv", "--data", d / "images", "--image-size", "100000", "--out",
                              d / "r2", "--quiet"],
        "train-hidden-1e9": ["train", "vae1", "--data", d / "x.npy", "--hidden", "1000000000", "--out", d / "r3",
                             "--quiet"],
        "data-n-1e12": ["data", "ppca", "-n", "1000000000000", "--out", d / "big.npy"],
        "train-samples-1e9": ["train", "vae1", "--data", d / "x.npy", "--samples", "1000000000", "--out", d / "r4",
                              "--quiet"],
        "pythae-4096x4096-input": ["inspect", d / "pythae"],
    }
    return d, {k: [str(a) for a in v] for k, v in cases.items()}


# the peak resident set of this process alone: /proc's VmHWM starts afresh at exec, where getrusage's ru_maxrss
# keeps the peak of the forked parent (pytest, which may hold far more)
RUNNER = """
import json, re, resource, sys
from click.testing import CliRunner
from entropy_elbo.cli import main

def peak_mb():
    try:
        with open("/proc/self/status") as f:
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read())[1]) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

out = {}
for name, args in json.loads(sys.argv[1]).items():
    r = CliRunner().invoke(main, args)
    out[name] = {"code": r.exit_code, "stderr": r.stderr, "stdout": r.stdout, "peak_mb": peak_mb()}
print(json.dumps(out))
"""

EXPECT = {
    "config-16x4096": ["wide.safetensors", r"hidden=\[4096, 4096, .* needs \(4096"],
    "conv-2048-channels": ["convwide.safetensors", r"channels=\[2048\]\) needs"],
    "deflated-pt": ["deflated.pt", "inflate to 128.0 MiB", "never compresses"],
    "stride0-view-6GiB": ["expanded.pt", r"strides \(0, 1\)", "6.0 GiB"],
    "npz-member": ["bomb.npz", "inflates from .* to 128.0 MiB"],
    "png-20000x20000": ["a.png", "20000x20000 image", "400,000,000 pixels"],
    "image-size-100000": ["--image-size 100000", "needs .* GiB of memory"],
    "train-hidden-1e9": ["--hidden", "1000000000", "GiB of memory"],
    "data-n-1e12": ["-n 1000000000000", "TiB"],
    "train-samples-1e9": ["--samples 1000000000", "1,000,000,000 samples x 20 rows", "TiB of memory"],
    "pythae-4096x4096-input": ["pythae", "do not fit pythae's default VAE networks", r"16777216\)"],
}


@pytest.fixture(scope="module")
def results(hostile) -> dict[str, dict]:
    _, cases = hostile
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(cases)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("case", sorted(EXPECT))
def test_tiny_file_huge_work_is_refused_in_one_line_under_500_mb(results, case):
    import re

    got = results[case]
    lines = got["stderr"].strip().splitlines()
    assert got["code"] == 1 and len(lines) == 1 and lines[0].startswith("Error: "), got
    assert "internal error" not in lines[0] and got["stdout"] == "", got
    for pattern in EXPECT[case]:
        assert re.search(pattern, lines[0]), (pattern, lines[0])
    assert got["peak_mb"] < PEAK_MB, (case, got["peak_mb"])


# ---------------------------------------------------------------------------------------------- chunked writing


def one_draw(name: str, n: int, seed: int) -> np.ndarray:
    """The generators as one draw of all n rows (the formulas of App. D.5 / D.4 / A, written out again)."""
    rng = np.random.default_rng(seed)
    if name in ("ppca", "ring"):
        w, mu = rng.uniform(0.0, 1.0, size=(10, 2)), rng.uniform(0.0, 1.0, size=10)
        x = rng.standard_normal((n, 2)) @ w.T + 0.1 * rng.standard_normal((n, 10))
        if name == "ring":
            return (mu + x / 10.0 + x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        return (x + mu).astype(np.float32)
    if name == "manifold":
        pairs = rng.integers(0, 10, size=(90, 2))
        base = 0.35 * rng.standard_normal((n, 10)) - 0.175
        x = np.concatenate([base, 0.35 * np.cos(base[:, pairs[:, 0]] ** 2 + base[:, pairs[:, 1]] ** 2)], axis=1)
        lo, hi = x.min(0), x.max(0)
        return ((x - lo) / np.where(hi > lo, hi - lo, 1.0)).astype(np.float32)
    q, r = np.linalg.qr(rng.standard_normal((10, 10)))
    u, s = q * np.sign(np.diag(r)), np.linspace(1.0, 5.0, 10)
    phases = []
    for d in (6, 2, 4):
        e, noise = rng.standard_normal((n // 3, 10)), rng.standard_normal((n // 3, 10))
        phases.append((e * np.where(np.arange(10) < d, s, 0.0)) @ u.T + 0.1 * noise)
    return np.concatenate(phases).astype(np.float32)


@pytest.mark.parametrize("name", ["ppca", "ring", "manifold", "stream"])
def test_chunked_generators_give_the_bits_of_one_draw(monkeypatch, name):
    from entropy_elbo.data import make_synthetic, synthetic
    from entropy_elbo.data.synthetic import synthetic_chunks

    monkeypatch.setattr(synthetic, "CHUNK_ROWS", 7)
    shape, chunks = synthetic_chunks(name, 51, seed=3)
    parts = list(chunks)
    assert max(len(p) for p in parts) <= 7 and shape == (51, parts[0].shape[1])
    want = one_draw(name, 51, 3)
    np.testing.assert_array_equal(np.concatenate(parts), want)
    np.testing.assert_array_equal(make_synthetic(name, 51, seed=3), want)


def test_data_writes_in_chunks_in_bounded_memory(monkeypatch, tmp_path):
    import tracemalloc

    from hostile_helpers import invoke

    from entropy_elbo.data import synthetic

    monkeypatch.setattr(synthetic, "CHUNK_ROWS", 512)
    invoke(["data", "ppca", "-n", 3, "--out", tmp_path / "warm.npy"])  # first-use imports are not the data's
    tracemalloc.start()
    result = invoke(["data", "ppca", "-n", 200_000, "--seed", 2, "--out", tmp_path / "x.npy"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.exit_code == 0, result.output
    whole = one_draw("ppca", 200_000, 2)
    assert (tmp_path / "x.npy").read_bytes() == _np_save_bytes(whole)  # the very file np.save writes
    assert peak < whole.nbytes / 4, (peak, whole.nbytes)  # one draw of n rows would hold several such arrays
    result = invoke(["data", "ring", "-n", 2000, "--seed", 2, "--out", tmp_path / "x.csv"])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "x.csv", delimiter=",", dtype=np.float32),
                                  one_draw("ring", 2000, 2))


def _np_save_bytes(x: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- long estimates


def test_the_forecast_of_a_monte_carlo_pass_is_near_its_measured_time(kit):
    import time

    from entropy_elbo.checkpoints import load_model
    from entropy_elbo.elbo import estimate
    from entropy_elbo.forecast import mc_forecast

    model = load_model(kit / "vae1.safetensors").model
    x = np.random.default_rng(0).normal(size=(512, 4)).astype(np.float32)
    forecast = mc_forecast(model, x, samples=1000, iwae=0, device="cpu")
    start = time.perf_counter()
    estimate(model, [x], samples=1000, generator=torch.Generator().manual_seed(0))
    took = time.perf_counter() - start
    assert took / 8 < forecast < 8 * took, (forecast, took)  # a busy shared machine: the order of magnitude


def test_estimate_says_how_long_it_will_take_before_it_starts(kit, monkeypatch):
    from hostile_helpers import invoke

    from entropy_elbo import forecast

    quiet = invoke(["estimate", kit / "vae1.safetensors", "--data", kit / "x.npy", "--samples", 10, "--json"])
    assert quiet.exit_code == 0 and "will take" not in quiet.stderr  # too small to be worth a probe
    monkeypatch.setattr(forecast, "MIN_WORK", 0)  # every pass is worth a probe here ...
    monkeypatch.setattr(forecast, "SAY_AFTER_S", 0.0)  # ... and 'long', so the line shows
    result = invoke(["estimate", kit / "vae1.safetensors", "--data", kit / "x.npy", "--samples", 800, "--iwae",
                     200, "--json"])
    assert result.exit_code == 0, result.output
    line = result.stderr.strip().splitlines()[0]
    assert line.startswith("estimate: this will take about ") and " s (" in line, line
    assert "50 rows x 800 Monte Carlo samples and 200 IWAE samples per row, timed on 50 rows" in line, line
    got = json.loads(result.stdout)
    assert (got["mc_samples"], got["iwae_samples"]) == (800, 200)


@pytest.mark.parametrize(("seconds", "text"), [(45, "45 s"), (600, "10 min"), (3 * 3600, "3.0 h"),
                                               (41 * 86400, "41 days"), (3e9, "95.1 years")])
def test_durations_are_said_in_the_unit_that_fits(seconds, text):
    from entropy_elbo.forecast import duration_text

    assert duration_text(seconds) == text


def test_a_peer_model_is_checked_against_the_weights_before_it_is_built():
    from torch import nn

    from entropy_elbo.checkpoints.user import build_to_fit
    from entropy_elbo.errors import CheckpointError

    built = []

    def huge() -> nn.Module:  # 40 GB of float32 weights if it were ever built for real
        built.append(torch.empty(0).device.type)
        return nn.Linear(100_000, 100_000)

    with pytest.raises(CheckpointError, match=r"^crafted: no fit \(shape \(file vs model\) weight \(4, 4\) vs "
                                              r"\(100000, 100000\)"):
        build_to_fit(huge, nn.Linear(4, 4).state_dict(), "crafted", "no fit ({})")
    assert built == ["meta"]  # built once, on the meta device only
    small = build_to_fit(lambda: nn.Linear(4, 4), nn.Linear(4, 4).state_dict(), "fine", "no fit ({})")
    assert small.weight.device.type == "cpu"


def test_a_model_declaring_a_huge_input_shape_is_not_probed(tmp_path):
    from hostile_helpers import assert_user_error, invoke

    (tmp_path / "wide.py").write_text('''
import torch
from torch import nn


class VAE(nn.Module):
    input_shape = (100_000, 100_000)  # a probe of two such inputs would take 80 GB

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(4, 4)
        self.dec = nn.Linear(2, 4)

    def encode(self, x):
        mu, log_var = self.enc(x.reshape(len(x), -1)[:, :4]).chunk(2, dim=1)
        return mu, log_var

    def decode(self, z):
        return self.dec(z)
''')
    torch.manual_seed(0)
    state = {"enc.weight": torch.randn(4, 4), "enc.bias": torch.zeros(4), "dec.weight": torch.randn(4, 2),
             "dec.bias": torch.zeros(4)}
    torch.save(state, tmp_path / "w.pt")
    result = invoke(["inspect", tmp_path / "w.pt", "--model", f"{tmp_path / 'wide.py'}:VAE"])
    assert_user_error(result, 1, "w.pt", r"a probe of 2 inputs of shape \(100000, 100000\)", "74.5 GiB")
