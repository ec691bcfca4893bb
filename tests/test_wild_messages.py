"""What the CLI and library say about a checkpoint from the wild: the numbers in the text are the ones used,
each remedy once, one message per line, candidates as the flags that pick them, readings scored over the file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from entropy_elbo.checkpoints.likelihood import bernoulli_loss, loss_reason
from entropy_elbo.checkpoints.pythae import check_pythae, pythae_implied_variance
from entropy_elbo.checkpoints.readings import AmbiguousReading, Reading, choose, spread_rows
from entropy_elbo.checkpoints.torchfiles import lightning_implied_variance
from entropy_elbo.cli import main
from entropy_elbo.elbo import Estimate, estimate
from entropy_elbo.errors import CheckpointError, EntropyElboError
from entropy_elbo.opening import score_rows
from entropy_elbo.stationarity import at_optimal_variance


class PlainVAE(nn.Module):
    """fc_mu / fc_var heads, an MSE-style decoder with no variance parameter."""

    def __init__(self, d: int = 4, h: int = 2) -> None:
        super().__init__()
        self.enc, self.fc_mu, self.fc_var = nn.Linear(d, 8), nn.Linear(8, h), nn.Linear(8, h)
        self.dec, self.out = nn.Linear(h, 8), nn.Linear(8, d)


@pytest.fixture()
def plain(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    torch.manual_seed(0)
    torch.save(PlainVAE().state_dict(), tmp_path / "m.pt")
    x = np.random.default_rng(0).standard_normal((300, 4))
    np.save(tmp_path / "y.npy", x)
    return tmp_path / "m.pt", tmp_path / "y.npy", x


FLAGS = ("--activation", "relu", "--output-activation", "linear", "--samples", "10")


def test_optimal_variance_lines_state_the_value_used(plain: tuple[Path, Path, np.ndarray]) -> None:
    model, data, _ = plain
    args = ["estimate", str(model), "--data", str(data), *FLAGS, "--decoder-variance", "optimal"]
    table = CliRunner().invoke(main, args)
    js = json.loads(CliRunner().invoke(main, [*args, "--json"]).stdout)
    assert table.exit_code == 0, table.output
    lines = table.stderr.splitlines()
    assert all(re.match(r"(read |assumed: |warning: |note: )", line) for line in lines), lines  # one per line
    assert table.stderr.count("note: ") == sum(line.startswith("note: ") for line in lines) >= 1
    dec = [line for line in lines if line.startswith("assumed: decoder variance")]
    assert dec == [dec[0]] and "chosen from the data after the pass" in dec[0]
    assert not re.search(r"sigma\^2 = \d", dec[0])  # no number in it: sigma^2 = 1 was never the one used
    # the note's sigma*^2 is the one the figures use: r = mean ||x - mu||^2 / (D sigma^2) = 1 there
    s2 = float(re.search(r"sigma\^2 r = ([0-9.e+-]+)", table.stderr).group(1))
    assert s2 == pytest.approx(js["stationarity"]["sigma2"], rel=1e-5) and js["stationarity"]["r"] == 1.0
    assert s2 != pytest.approx(1.0, abs=1e-3)
    assert js["extra"]["checkpoint"]["decoder"]["value"] == js["stationarity"]["sigma2"]  # the one used, not 1
    inspected = json.loads(CliRunner().invoke(main, ["inspect", str(model), "--decoder-variance", "optimal",
                                                    "--json"]).stdout)
    assert inspected["decoder"]["value"] is None  # chosen by estimate from the data: no number yet


def test_never_learned_variance_says_the_remedy_once(plain: tuple[Path, Path, np.ndarray]) -> None:
    model, data, _ = plain
    result = CliRunner().invoke(main, ["estimate", str(model), "--data", str(data), *FLAGS])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {model}: its decoder variance was never learned (no parameter or sub-network is named like a "
        "decoder variance (e.g. an MSE loss)); pass --decoder-variance VALUE for the Monte Carlo ELBO at that "
        "sigma^2, or --decoder-variance optimal for the ELBO at the best sigma^2 given the rest\n")


class ConstantMean(nn.Module):
    """q(z|x) = N(0, 1), p(x|z) = N(c, 1): a row's ELBO is -0.5 (log 2 pi + (x - c)^2) exactly."""

    latent_dim, prior_log_var, decoder_variance = 1, None, "learned"

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(len(x), 1), torch.zeros(len(x), 1)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full((len(z), 1), self.c), torch.tensor(0.0)


def test_tied_readings_are_listed_as_the_flags_that_pick_them() -> None:
    readings = [Reading("relu", head_activation=True), Reading("relu", head_activation=False)]
    x = torch.randn(300, 1, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AmbiguousReading) as err:
        choose(lambda r: ConstantMean(0.001 if r.head_activation else 0.0), readings, x)
    text = str(err.value)
    assert "`--activation relu --output-activation linear --head-activation` gives ELBO" in text
    assert "`--activation relu --output-activation linear --no-head-activation` gives ELBO" in text
    assert "--head-activation:" not in text and "on 256 rows" in text


def test_readings_are_scored_over_the_whole_file_not_its_first_rows(tmp_path: Path) -> None:
    """Sorted by class: 300 rows at 0, then 700 at 5. The first 256 rows favour c = 0; the file favours c = 5."""
    x = torch.cat([torch.zeros(300, 1), torch.full((700, 1), 5.0)])
    readings = [Reading("relu", output="linear"), Reading("relu", output="sigmoid")]
    build = lambda r: ConstantMean(0.0 if r.output == "linear" else 5.0)  # noqa: E731
    chosen, scored, evidence = choose(build, readings, x)
    assert chosen.output == "sigmoid"
    idx = np.arange(256) * 1000 // 256
    share = float((x[idx] == 5.0).double().mean())  # the ELBO by hand: -0.5 log 2 pi - 12.5 on the other class
    base = -0.5 * np.log(2 * np.pi)
    expected = {"linear": base - 12.5 * share, "sigmoid": base - 12.5 * (1 - share)}
    for s in scored:
        assert s.score == pytest.approx(expected[s.reading.output], rel=1e-12)
    assert "scored on 256 data rows" in evidence
    # the CLI's rows are the same spread of a memory-mapped file
    np.save(tmp_path / "x.npy", x.numpy())
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert torch.equal(score_rows(mm), x[idx])
    assert spread_rows(100).tolist() == list(range(100)) and spread_rows(0).size == 0


def test_library_errors_read_right_in_a_notebook() -> None:
    est = Estimate(n=1, d=1, h=1, decoder_variance="fixed", entropy_elbo=None, entropies={}, mc_elbo=None,
                   mc_stderr=None, mc_sampling_stderr=None, mc_samples=0, stationarity={"a": [1.0]})
    with pytest.raises(EntropyElboError, match=r"samples >= 1 \(--samples 1 or more\)"):
        at_optimal_variance(est)
    with pytest.raises(EntropyElboError, match=r"^samples \(--samples\): got -1; pass 0"):
        estimate(None, [np.zeros((1, 2))], samples=-1)


def test_one_bernoulli_loss_rule_serves_lightning_and_pythae() -> None:
    assert bernoulli_loss({"params": {"Recon_Loss": "BCE_sum"}}) == ("Recon_Loss", "BCE_sum")  # nested, any case
    assert bernoulli_loss({"reconstruction_loss": "mse", "name": "bce"}) is None  # "name" is no loss key
    assert loss_reason({"hyper_parameters": {"params": {"loss": "binary_cross_entropy"}}}) == (
        "its hyper_parameters name the loss 'binary_cross_entropy' (loss): a Bernoulli decoder, outside the entropy "
        "form (Thm. 1 needs a Gaussian decoder)")
    with pytest.raises(CheckpointError, match=r"^pythae BetaVAE was trained with reconstruction_loss 'bce': a Bern"):
        check_pythae({"name": "BetaVAEConfig", "reconstruction_loss": "bce"})
    check_pythae({"name": "MSSSIM_VAE_Config", "reconstruction_loss": "bce"})  # its own loss: the field is unused


def test_one_table_of_losses_that_are_no_elbo_serves_pythae_and_pytorch_vae() -> None:
    ssim = "its reconstruction loss is an MS-SSIM similarity, not a Gaussian log-likelihood"
    assert pythae_implied_variance({"name": "MSSSIM_VAE_Config"}) == (
        None, f"pythae MSSSIM_VAE: {ssim}; no fixed decoder variance is implied")
    assert lightning_implied_variance({"params": {"name": "MSSIMVAE", "kld_weight": 0.01}}, 4) == (
        None, f"hyper_parameters: PyTorch-VAE MSSIMVAE: {ssim}; no sigma^2 is implied")
    capacity = "its loss targets a KL capacity C (a weight times |KL - C|), so it is not the ELBO at any one sigma^2"
    assert pythae_implied_variance({"name": "DisentangledBetaVAEConfig"})[1] == (
        f"pythae DisentangledBetaVAE: {capacity}; no fixed decoder variance is implied")
    assert lightning_implied_variance({"kld_weight": 0.01, "beta": 4}, 4) == (
        None, f"hyper_parameters: kld_weight 0.01 with loss_type 'B': {capacity}; no sigma^2 is implied")
    assert lightning_implied_variance({"kld_weight": 0.01}, 4)[0] == pytest.approx(4 * 0.01 / 2)  # D w / 2
