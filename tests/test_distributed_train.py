"""`collapse` and `train` under torchrun (2 CPU processes, gloo): collapse equals one process; DDP training
equals a one-process replay of the two ranks (each rank's own batches and samples, gradients averaged)."""

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

from entropy_elbo.checkpoints import load_model, save_checkpoint
from entropy_elbo.cli import main
from entropy_elbo.data import make_synthetic, manifold, save_array
from entropy_elbo.distributed import Context, rows_per_rank
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models import ModelConfig, build_model
from entropy_elbo.runs import read_log
from entropy_elbo.train import StepHooks, TrainConfig, sampled_elbo_parts, train

REPO = Path(__file__).resolve().parents[1]


def torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m entropy_elbo ARGS` as 2 gloo processes on this machine."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "entropy_elbo", *args], capture_output=True, text=True, env=env, timeout=120)


def test_collapse_under_torchrun_equals_one_process(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=100, latent_dim=20, hidden=(128, 40),
                                    activation="leaky_relu", init_log_sigma2=-2.0))
    with torch.no_grad():  # some latents near the prior (collapsed), some far from it
        model.fc_var.bias[:10] = -3.0
        model.fc_mu.weight[10:] *= 0.01
    ckpt, data = tmp_path / "vae1.safetensors", tmp_path / "manifold.npy"
    save_checkpoint(model, ckpt)
    save_array(manifold(n=3001, seed=1), data)  # ranks get 1500 and 1501 rows: chunks of 500 plus one row
    args = ["collapse", str(ckpt), "--data", str(data), "--batch-size", "500", "--json", "--device", "cpu"]
    run = torchrun(*args)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, run.stdout  # rank 0 alone prints
    dist = json.loads(lines[0])
    one = CliRunner().invoke(main, args)
    assert one.exit_code == 0, one.output
    single = json.loads(one.stdout)

    assert dist["n"] == single["n"] == 3001
    for key in ("mean_entropy", "mean_kl", "encoder_mean_variance", "lucas_fraction"):
        np.testing.assert_allclose(dist[key], single[key], rtol=1e-9, atol=1e-12, err_msg=key)
    assert dist["collapsed"] == single["collapsed"]
    assert 0 < dist["counts"]["entropy"] < 20  # the test model has collapsed and active latents alike
    # the merged population variance against numpy over the whole data, independently
    with torch.inference_mode():
        nu, _ = model.encode(torch.from_numpy(manifold(n=3001, seed=1)))
    np.testing.assert_allclose(dist["encoder_mean_variance"], nu.double().var(0, unbiased=False).numpy(), rtol=1e-5)


class TwoRanksReplayed(StepHooks):
    """Both ranks of a 2-process DDP run in one process: rank 1's batches and samples from seed + 1, the loss
    the mean over both equal-size batches (the gradients DDP averages), the epoch sums over both blocks."""

    def __init__(self, block1: torch.Tensor, config: TrainConfig) -> None:
        self.block1, self.config = block1, config
        self.gen1 = torch.Generator().manual_seed(config.seed + 1)
        self.pending: list[torch.Tensor] = []

    def parts(self, model, x, samples, generator):  # noqa: ANN001, ANN201
        if not self.pending:  # rank 1 starts an epoch: its shuffle comes before its first step's samples
            self.pending = list(torch.randperm(len(self.block1), generator=self.gen1).split(self.config.batch_size))
        idx = self.pending.pop(0)
        f0, _, _ = sampled_elbo_parts(model, x, samples, generator)
        f1, _, _ = sampled_elbo_parts(model, self.block1[idx], samples, self.gen1)
        assert len(f0) == len(f1)
        with torch.no_grad():  # log tau^2 as the model gives it (the linear VAE's: a view of its parameter)
            log_tau2 = model.encode(torch.cat([x, self.block1[idx]]))[1]
        return torch.cat([f0, f1]), log_tau2, None

    def reduce(self, n, elbo_sum, latent_sum, dec_sum):  # noqa: ANN001, ANN201
        return 2 * n, elbo_sum, latent_sum, dec_sum


def test_train_under_torchrun_writes_one_checkpoint_that_a_replay_of_both_ranks_reproduces(tmp_path: Path) -> None:
    x = make_synthetic("ppca", n=601, seed=3)  # (601, 10): blocks of 300 rows, one row left out
    data, out = tmp_path / "ppca.npy", tmp_path / "run"
    save_array(x, data)
    run = torchrun("train", "linear", "--data", str(data), "--latents", "2", "--epochs", "3", "--batch-size", "100",
                   "--lr", "0.01", "--samples", "4", "--out", str(out), "--device", "cpu", "--quiet")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr.count("wrote ") == 1 and "the last 1 of 601 rows left out" in run.stderr  # rank 0 alone
    assert sorted(p.name for p in out.iterdir()) == ["log.jsonl", "model.safetensors", "run.json", "state.safetensors"]
    settings = json.loads((out / "run.json").read_text())
    assert settings["data"]["processes"] == 2 and settings["data"]["rows_per_process"] == 300
    rows = read_log(out / "log.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # one row per epoch: rank 1 wrote none
    for r in rows:
        assert all(math.isfinite(r[k]) for k in ("mc_elbo", "entropy_elbo", "encoder_entropy", "decoder_entropy"))
        assert math.isclose(r["encoder_entropy"], sum(r["latent_entropies"]), rel_tol=1e-12)
        assert math.isclose(r["entropy_elbo"], r["encoder_entropy"] - r["prior_entropy"] - r["decoder_entropy"],
                            rel_tol=1e-12)
    trained = load_model(out / "model.safetensors").model

    # The same run replayed in one process (the CLI's initial weights: manual_seed(seed), then build_model).
    config = TrainConfig(epochs=3, batch_size=100, lr=0.01, samples=4, seed=0)
    torch.manual_seed(0)
    replica = build_model(trained.config)
    xt = torch.from_numpy(x)
    with TwoRanksReplayed(xt[300:600], config):
        replayed = train(replica, xt[:300], config)
    for got, want in zip(rows, replayed, strict=True):
        for key in ("mc_elbo", "entropy_elbo", "encoder_entropy", "decoder_entropy"):
            assert math.isclose(got[key], want[key], rel_tol=1e-5), (got["epoch"], key, got[key], want[key])
    torch.manual_seed(0)
    initial = build_model(trained.config).state_dict()
    for name, want in replica.state_dict().items():
        torch.testing.assert_close(trained.state_dict()[name], want, rtol=1e-5, atol=1e-6, msg=name)
        assert (want - initial[name]).abs().max() > 1e-3  # every parameter moved: the comparison means something


def test_train_needs_a_row_per_process() -> None:
    assert rows_per_rank(5, Context(rank=1, world_size=2, local_rank=1)) == 2
    with pytest.raises(EntropyElboError, match="1 training rows for 2 processes"):
        rows_per_rank(1, Context(rank=0, world_size=2, local_rank=0))
