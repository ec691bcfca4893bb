"""Chunk sizes from free memory, the entropy-only pass against closed forms, bounded memory on a memmap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from entropy_elbo.batching import CPU_MAX_ROWS, MIN_ROWS, auto_batch_size, bytes_per_row, resolve_batch_size
from entropy_elbo.checkpoints import save_checkpoint
from entropy_elbo.cli import main
from entropy_elbo.data import iter_batches
from entropy_elbo.elbo import estimate
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models import ModelConfig, build_model

REPO = Path(__file__).resolve().parents[1]


def vae1(d: int = 100, h: int = 20) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(kind="vae1", data_dim=d, latent_dim=h, hidden=(128, 40), activation="leaky_relu"))


def test_auto_batch_size_fits_the_budget_and_the_clamps() -> None:
    model = vae1()
    rows = auto_batch_size(model, 100, 0, "cpu")
    assert MIN_ROWS <= rows <= CPU_MAX_ROWS
    assert rows * bytes_per_row(model, 100, 0) <= 256 * 2**20
    huge = auto_batch_size(model, 10**8, 100, "cpu")  # a row of 400 MB: the floor, not zero
    assert huge == MIN_ROWS
    assert resolve_batch_size(123, model, 100, 0, "cpu") == 123
    with pytest.raises(EntropyElboError, match="--batch-size"):
        resolve_batch_size(0, model, 100, 0, "cpu")


def test_entropy_only_pass_matches_torch_distributions() -> None:
    model = vae1(d=7, h=3)
    x = np.random.default_rng(0).random((1000, 7), dtype=np.float32)
    est = estimate(model, iter_batches(x, 300), samples=0)
    with torch.no_grad():
        nu, log_tau2 = model.encode(torch.from_numpy(x))
        q = torch.distributions.Normal(nu.double(), (0.5 * log_tau2.double()).exp())
        enc = float(q.entropy().sum(-1).mean())
        a = (nu.double() ** 2 + log_tau2.double().exp()).mean(0)
    assert est.entropies["encoder"] == pytest.approx(enc, rel=1e-12)
    np.testing.assert_allclose(est.stationarity["a"], a.numpy(), rtol=1e-12)
    assert est.mc_elbo is None and est.n == 1000


def test_cli_without_batch_size_chooses_one(tmp_path: Path) -> None:
    model = vae1(d=5, h=2)
    save_checkpoint(model, tmp_path / "m.safetensors")
    x = np.random.default_rng(1).random((500, 5), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    args = ["estimate", str(tmp_path / "m.safetensors"), "--data", str(tmp_path / "x.npy"), "--samples", "0",
            "--json"]
    auto = CliRunner().invoke(main, args)
    given = CliRunner().invoke(main, [*args, "--batch-size", "7"])
    assert auto.exit_code == 0 and given.exit_code == 0, auto.output + given.output
    assert auto.stdout.startswith("{") and auto.stdout.count("\n") == 1  # one JSON object, no progress noise
    a, b = json.loads(auto.stdout), json.loads(given.stdout)
    # float32 matmul kernels may round a row differently for other chunk sizes: agreement to float32 level
    assert a["entropy_elbo"] == pytest.approx(b["entropy_elbo"], rel=1e-6)
    bad = CliRunner().invoke(main, [*args, "--batch-size", "0"])
    assert bad.exit_code == 1 and "--batch-size" in bad.output


RSS_CHILD = """
import resource, sys
sys.path.insert(0, sys.argv[2])
from entropy_elbo.data import iter_batches, open_array
x = open_array(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
total = sum(float(b[:, 0].sum(dtype='float64')) for b in iter_batches(x, 4096))
print(total, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_streaming_a_memmap_keeps_its_pages_out_of_the_resident_set(tmp_path: Path) -> None:
    path = tmp_path / "big.npy"
    rows, d = 640_000, 100  # 256 MB of float32
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, d))
    for start in range(0, rows, 64_000):
        out[start : start + 64_000] = np.arange(start, start + 64_000, dtype=np.float32)[:, None]
    out.flush()
    del out
    run = subprocess.run([sys.executable, "-c", RSS_CHILD, str(path), str(REPO)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    total, grown_mb = (float(v) for v in run.stdout.split())
    assert total == pytest.approx(rows * (rows - 1) / 2, rel=1e-12)  # every row read once, in order
    assert grown_mb < 128  # without releasing pages the resident set grows by the file's 256 MB


def test_linear_vae_entropy_elbo_without_data_equals_the_full_pass() -> None:
    from entropy_elbo.elbo import entropy_elbo_without_data

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="linear", data_dim=6, latent_dim=2, init_log_sigma2=-1.0))
    x = np.random.default_rng(2).random((400, 6), dtype=np.float32)
    full = estimate(model, iter_batches(x, 100), samples=0).entropy_elbo
    normal = torch.distributions.Normal
    with torch.no_grad():
        enc = normal(0.0, (0.5 * model.log_tau2.double()).exp()).entropy().sum()
        prior = normal(torch.zeros(2, dtype=torch.float64), 1.0).entropy().sum()
        dec = 6 * normal(0.0, (0.5 * model.log_sigma2.double()).exp()).entropy()
    by_hand = float(enc - prior - dec)  # eq. 20: encoder minus prior minus decoder entropy
    assert entropy_elbo_without_data(model, 6) == pytest.approx(by_hand, rel=1e-12)
    assert full == pytest.approx(by_hand, rel=1e-12)
    assert entropy_elbo_without_data(vae1(), 100) is None  # x-dependent encoder variance: needs the data
