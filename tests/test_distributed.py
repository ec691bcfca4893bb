"""`estimate` under torchrun (2 CPU processes, gloo) against one process; shards; the sum reduction."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from entropy_elbo.checkpoints import save_checkpoint
from entropy_elbo.cli import main
from entropy_elbo.data import manifold, save_array
from entropy_elbo.distributed import Context, context_from_env, shard_rows
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models import ModelConfig, build_model

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("n", "world"), [(10, 3), (3001, 2), (2, 5), (0, 2)])
def test_shards_cover_every_row_once_in_contiguous_blocks(n: int, world: int) -> None:
    shards = [shard_rows(n, r, world) for r in range(world)]
    assert np.array_equal(np.concatenate(shards), np.arange(n))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    assert all(np.array_equal(s, np.arange(s[0], s[0] + len(s))) for s in shards if len(s))


def test_context_comes_from_torchruns_environment() -> None:
    assert context_from_env({}) is None
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    assert context_from_env(env) == Context(rank=1, world_size=2, local_rank=1)
    with pytest.raises(EntropyElboError, match="MASTER_ADDR"):
        context_from_env({"RANK": "0", "WORLD_SIZE": "2"})


@pytest.fixture(scope="module")
def vae_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("dist")
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=100, latent_dim=20, hidden=(128, 40),
                                    activation="leaky_relu", init_log_sigma2=-2.0))
    ckpt, data = folder / "vae1.safetensors", folder / "manifold.npy"
    save_checkpoint(model, ckpt)
    save_array(manifold(n=3001, seed=1), data)  # ranks get 1500 and 1501 rows
    return ckpt, data


def test_torchrun_two_processes_match_one(vae_and_data: tuple[Path, Path]) -> None:
    ckpt, data = vae_and_data
    args = ["estimate", str(ckpt), "--data", str(data), "--samples", "20", "--iwae", "5", "--batch-size", "500",
            "--json", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "entropy_elbo", *args], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, run.stdout  # rank 0 alone prints: one JSON object
    dist = json.loads(lines[0])
    # Chunks of 500 rows leave the same chunk sizes (500s and one row) in both runs, so float32 kernels round
    # every row alike and only the float64 sums' order differs.

    one = CliRunner().invoke(main, args)
    assert one.exit_code == 0, one.output
    single = json.loads(one.stdout)

    assert dist["n"] == single["n"] == 3001
    assert math.isclose(dist["entropy_elbo"], single["entropy_elbo"], rel_tol=1e-9)
    for name in ("encoder", "prior", "decoder"):
        assert math.isclose(dist["entropies"][name], single["entropies"][name], rel_tol=1e-9)
    np.testing.assert_allclose(dist["stationarity"]["a"], single["stationarity"]["a"], rtol=1e-9)
    # Each row's samples come from its own stream (seed, row): the same draws in one process and in two, so
    # the Monte Carlo figures agree up to the float64 sums' order.
    for name in ("mc_elbo", "mc_stderr", "mc_sampling_stderr", "iwae", "iwae_stderr"):
        assert math.isclose(dist[name], single[name], rel_tol=1e-9), name
    assert math.isclose(dist["stationarity"]["r"], single["stationarity"]["r"], rel_tol=1e-9)


def test_sums_of_shards_add_up_to_one_pass_even_with_an_empty_shard() -> None:
    from entropy_elbo.elbo import accumulate

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="linear", data_dim=4, latent_dim=2))
    x = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    # one batch per row, as in the shards: a float32 forward pass is not bit-identical across batch shapes
    whole = accumulate(model, [x[i:i + 1] for i in range(3)], samples=0)
    parts = [accumulate(model, [x[shard_rows(3, r, 4)]], samples=2, generator=torch.Generator().manual_seed(r))
             for r in range(4)]  # 4 ranks, 3 rows: one rank holds none
    assert sum(len(shard_rows(3, r, 4)) == 0 for r in range(4)) == 1
    assert all(set(p) == set(parts[0]) for p in parts)  # same keys on every rank: all_reduce pairs them up
    for key in whole:
        torch.testing.assert_close(sum(p[key] for p in parts), whole[key], rtol=1e-12, atol=1e-12)
