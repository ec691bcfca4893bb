"""Spread and cost of the ELBO estimators over random subsets (Sec. 4, Fig. 2(b), Fig. 6), and the CLI."""

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn
from torch.distributions import Normal

from entropy_elbo import compare as cmp_mod
from entropy_elbo.checkpoints import save_checkpoint
from entropy_elbo.cli import main
from entropy_elbo.data import make_synthetic
from entropy_elbo.elbo import estimate
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models import LinearVAE, ModelConfig, build_model
from entropy_elbo.models.protocol import VAEBase
from entropy_elbo.train import TrainConfig, train

SIZES = (10, 100, 1000)


@pytest.fixture(scope="module")
def trained():
    """A VAE-1 briefly trained on 2,000 pPCA points (D=10, H=2)."""
    torch.manual_seed(0)
    x = make_synthetic("ppca", n=2000, seed=0)
    model = build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2))
    train(model, x, TrainConfig(epochs=30, batch_size=200, lr=3e-3, samples=1))
    return model, x


@pytest.fixture(scope="module")
def comparison(trained):
    model, x = trained
    return cmp_mod.compare(model, x, sizes=SIZES, repeats=20, mc_samples=(1, 20), seed=3)


def test_entropy_elbo_variance_is_at_least_ten_times_lower_than_one_sample_mc_at_every_n(comparison):
    for n in SIZES:
        h, mc = comparison.run("entropy", n), comparison.run("mc1", n)
        assert mc.std**2 >= 10 * h.std**2, (n, mc.std, h.std)  # Fig. 6: the variance at least 10x lower
        assert mc.variance_ratio == pytest.approx((mc.std / h.std) ** 2)
        assert mc.speed_ratio == pytest.approx(mc.variance_ratio * mc.seconds / h.seconds)
        assert h.seconds > 0 and mc.seconds > 0
        assert comparison.run("entropy", n).variance_ratio is None  # ratios live on the Monte Carlo rows


def test_subsets_are_seeded_draws_without_replacement_and_values_match_an_independent_entropy_elbo(trained):
    model, x = trained
    result = cmp_mod.compare(model, x, sizes=(50, 7), repeats=3, mc_samples=(1,), seed=11)
    assert result.sizes == [7, 50]  # sorted, and the draws follow that order
    rng = np.random.default_rng(11)
    sigma2 = model.log_sigma2.detach().double().exp()
    decoder = Normal(0.0, sigma2.sqrt()).entropy() * 10  # D=10 dimensions, scalar variance
    prior = Normal(0.0, torch.ones(2, dtype=torch.float64)).entropy().sum()
    for n in (7, 50):
        want = []
        for _ in range(3):
            idx = rng.choice(len(x), size=n, replace=False)
            with torch.no_grad():
                _, log_tau2 = model.encode(torch.as_tensor(x[idx]))
            enc = Normal(0.0, (0.5 * log_tau2.double()).exp()).entropy().sum(-1).mean()
            want.append(float(enc - prior - decoder))
        run = result.run("entropy", n)
        assert run.values == pytest.approx(want, abs=1e-6)
        assert run.std == pytest.approx(np.std(want, ddof=1), rel=1e-4)
    again = cmp_mod.compare(model, x, sizes=(7, 50), repeats=3, mc_samples=(1,), seed=11)
    assert [r.values for r in again.runs] == [r.values for r in result.runs]  # same seed, same numbers


def test_subset_means_agree_with_the_full_data_estimates(trained, comparison):
    model, x = trained
    full = estimate(model, [x], samples=50, generator=torch.Generator().manual_seed(0))
    for n in SIZES:
        for name, want in (("entropy", full.entropy_elbo), ("mc1", full.mc_elbo), ("mc20", full.mc_elbo)):
            run = comparison.run(name, n)
            tol = 4 * run.std / math.sqrt(len(run.values)) + 4 * full.mc_stderr * (name != "entropy")
            assert abs(run.mean - want) < tol, (name, n, run.mean, want)


def test_at_n_equal_to_the_data_size_and_for_a_linear_vae_the_entropy_elbo_has_no_spread(trained):
    model, x = trained
    x = x[:300]
    full = cmp_mod.compare(model, x, sizes=(300,), repeats=2, mc_samples=(1,))
    assert full.run("entropy", 300).std < 1e-6 and full.run("mc1", 300).std > 1e-4
    assert full.run("mc1", 300).variance_ratio is None  # Monte Carlo never reaches zero spread
    linear = LinearVAE(ModelConfig(kind="linear", data_dim=10, latent_dim=2)).eval()
    lin = cmp_mod.compare(linear, x, sizes=(5, 50), repeats=3, mc_samples=(1,))
    for n in (5, 50):  # Cor. 1: the linear VAE's entropy ELBO needs no data at all
        assert lin.run("entropy", n).std == 0
        assert lin.run("mc1", n).speed_ratio is None


def test_bad_sizes_and_repeats_are_one_line_errors(trained):
    model, x = trained
    with pytest.raises(EntropyElboError, match=r"^sizes \(--sizes\): 5000 exceeds the 2000 rows of data"):
        cmp_mod.compare(model, x, sizes=(10, 5000))
    with pytest.raises(EntropyElboError, match=r"^repeats \(--repeats\): got 1"):
        cmp_mod.compare(model, x, repeats=1)
    with pytest.raises(EntropyElboError, match="--sizes"):
        cmp_mod.parse_sizes("10,abc")
    assert cmp_mod.parse_sizes("10, 1e3") == [10, 1000]
    assert cmp_mod.check_sizes(None, 2, 500, "data") == [10, 100]  # the defaults, below N
    assert cmp_mod.check_sizes(None, 2, 1000, "data") == [10, 100]  # not n = N: every subset is the whole data
    assert cmp_mod.check_sizes(None, 2, 5, "data") == [2]  # fewer rows than the smallest default: half of them


class VarianceNetVAE(VAEBase):
    """A VAE-3-like model whose decoder log-variance is linear in z: E_q log sigma^2(z) = c + B nu exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim, self.decoder_variance = 2, "network"
        g = torch.Generator().manual_seed(0)
        self.enc = nn.Linear(4, 4)
        self.dec = nn.Linear(2, 4)
        self.var = nn.Linear(2, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g))

    def encode(self, x):
        out = self.enc(x)
        return out[:, :2], out[:, 2:] - 1.0

    def decode(self, z):
        return self.dec(z), self.decoder_log_var(z)

    def decoder_log_var(self, z):
        return self.var(z)


def test_variance_network_decoder_entropy_is_sampled_and_unbiased():
    model = VarianceNetVAE().eval()
    x = np.random.default_rng(0).standard_normal((400, 4)).astype(np.float32)
    result = cmp_mod.compare(model, x, sizes=(400,), repeats=8, mc_samples=(1,), seed=0)
    assert {r.estimator for r in result.runs} == {"entropy", "decoder_entropy", "mc1"}
    with torch.no_grad():
        nu, log_tau2 = model.encode(torch.as_tensor(x))
        log_sigma2 = model.var(nu).double()  # linear in z, so its expectation under q is its value at nu
    exact_dec = float((0.5 * (math.log(2 * math.pi * math.e) + log_sigma2)).sum(-1).mean())
    dec = result.run("decoder_entropy", 400)
    assert dec.std > 0  # every subset is the whole data: the spread is sampling noise alone
    assert abs(dec.mean - exact_dec) < 4 * dec.std / math.sqrt(8)
    enc = float(Normal(0.0, (0.5 * log_tau2.double()).exp()).entropy().sum(-1).mean())
    exact_elbo = enc - math.log(2 * math.pi * math.e) - exact_dec
    h = result.run("entropy", 400)
    assert abs(h.mean - exact_elbo) < 4 * h.std / math.sqrt(8)


def test_plot_draws_an_image_and_says_when_matplotlib_is_missing(comparison, tmp_path, monkeypatch):
    path = cmp_mod.plot_comparison(comparison, tmp_path / "cmp.png")
    with Image.open(path) as img:
        assert img.size[0] > 300 and img.size[1] > 300
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(EntropyElboError, match="--plot needs matplotlib"):
        cmp_mod.plot_comparison(comparison, tmp_path / "again.png")


@pytest.fixture(scope="module")
def files(trained, tmp_path_factory):
    model, x = trained
    folder = tmp_path_factory.mktemp("cmp")
    np.save(folder / "x.npy", x[:500])
    save_checkpoint(model, folder / "m.safetensors")
    return folder


def test_cli_compare_json(files):
    args = ["compare", str(files / "m.safetensors"), "--data", str(files / "x.npy"), "--sizes", "10,100",
            "--repeats", "4", "--mc-samples", "1,5", "--seed", "2", "--device", "cpu", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["n_data"], out["d"], out["h"], out["repeats"], out["sizes"]) == (500, 10, 2, 4, [10, 100])
    assert out["units"] == "nats per data point"
    runs = {(r["estimator"], r["n"]): r for r in out["runs"]}
    assert set(runs) == {(e, n) for e in ("entropy", "mc1", "mc5") for n in (10, 100)}
    for n in (10, 100):
        h, mc = runs["entropy", n], runs["mc1", n]
        assert len(mc["values"]) == 4 and mc["std"] == pytest.approx(np.std(mc["values"], ddof=1))
        assert mc["variance_ratio"] == pytest.approx((mc["std"] / h["std"]) ** 2)
    assert json.loads(CliRunner().invoke(main, args).stdout) is not None  # reruns cleanly


def test_cli_compare_table_plot_and_errors(files):
    base = ["compare", str(files / "m.safetensors"), "--data", str(files / "x.npy"), "--device", "cpu"]
    result = CliRunner().invoke(main, [*base, "--sizes", "10,50", "--repeats", "3", "--mc-samples", "1",
                                       "--plot", str(files / "fig.png")])
    assert result.exit_code == 0, result.output
    assert "MC S=1" in result.stdout and "var ratio" in result.stdout and "nats/point" in result.stdout
    assert (files / "fig.png").stat().st_size > 1000
    bad = CliRunner().invoke(main, [*base, "--sizes", "10,100000"])
    assert bad.exit_code == 1
    assert bad.stderr.strip().splitlines() == [
        f"Error: sizes (--sizes): 100000 exceeds the 500 rows of {files / 'x.npy'}; pass sizes of at most 500"
    ]


def test_cli_estimate_iwae_adds_keys_and_keeps_the_rest(tmp_path):
    from test_iwae import linear_vae

    model, x, exact = linear_vae()
    save_checkpoint(model, tmp_path / "lin.safetensors")
    np.save(tmp_path / "x.npy", x.numpy())
    base = ["estimate", str(tmp_path / "lin.safetensors"), "--data", str(tmp_path / "x.npy"), "--device", "cpu",
            "--samples", "20", "--json"]
    plain = json.loads(CliRunner().invoke(main, base).stdout)
    result = CliRunner().invoke(main, [*base, "--iwae", "200"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == set(plain)  # same keys; iwae, iwae_stderr, iwae_samples were null before
    assert plain["iwae"] is None and out["iwae_samples"] == 200
    assert {k: v for k, v in out.items() if not k.startswith("iwae")} == {
        k: v for k, v in plain.items() if not k.startswith("iwae")}
    se = out["iwae_stderr"]
    assert se == pytest.approx(float(exact.std()) / math.sqrt(len(x)), rel=0.2)
    assert out["mc_elbo"] < out["iwae"] <= out["ppca_loglik"] + 0.02  # ELBO <= IWAE <= log p(x)
    assert out["ppca_loglik"] == pytest.approx(float(exact.mean()), abs=1e-6)
    table = CliRunner().invoke(main, [*base[:-1], "--iwae", "20"])
    assert table.exit_code == 0 and "IWAE bound" in table.stdout and "K=20" in table.stdout
    bad = CliRunner().invoke(main, [*base, "--iwae", "-3"])
    assert bad.exit_code == 1
    assert bad.stderr.strip() == "Error: --iwae: got -3; pass a positive number K of importance samples"
