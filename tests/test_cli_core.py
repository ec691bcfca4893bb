"""The core commands end to end: data -> train -> estimate, checked against scikit-learn's pPCA."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.decomposition import PCA

from entropy_elbo.cli import main

REQUIRED_KEYS = {"entropy_elbo", "mc_elbo", "mc_stderr", "mc_samples", "n", "d", "h", "decoder_variance",
                 "entropies", "stationarity", "units", "ppca_loglik"}


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def trained_linear(tmp_path_factory):
    """`train linear` with default settings on pPCA data (D=10, H=2, N=10,000, sigma=0.1)."""
    folder = tmp_path_factory.mktemp("linear")
    data, ckpt = folder / "x.npy", folder / "linear.safetensors"
    run("data", "ppca", "--out", str(data), "-n", "10000", "--seed", "3")
    run("train", "linear", "--data", str(data), "--latents", "2", "--out", str(ckpt), "--quiet")
    out = json.loads(run("estimate", str(ckpt), "--data", str(data), "--json", "--samples", "100"))
    return np.load(data), out


def test_linear_vae_entropy_elbo_is_within_half_a_percent_of_sklearn_ppca(trained_linear):
    x, out = trained_linear
    reference = PCA(n_components=2).fit(x).score(x)  # maximum-likelihood pPCA log-likelihood per point
    assert abs(out["entropy_elbo"] - reference) / abs(reference) < 0.005
    # At the pPCA optimum the exact log-likelihood of the learned W, sigma^2 (eq. 26) is the maximum too.
    assert abs(out["ppca_loglik"] - reference) / abs(reference) < 0.005


def test_linear_vae_mc_elbo_is_within_three_standard_errors_of_entropy_elbo(trained_linear):
    _, out = trained_linear
    assert abs(out["mc_elbo"] - out["entropy_elbo"]) < 3 * out["mc_stderr"]
    assert out["mc_samples"] == 100 and out["n"] == 10000


def test_estimate_json_has_the_documented_keys_and_units(trained_linear):
    _, out = trained_linear
    assert set(out) >= REQUIRED_KEYS
    assert out["units"] == "nats per data point" and out["decoder_variance"] == "scalar"
    assert set(out["entropies"]) == {"encoder", "prior", "decoder"}
    assert {"r", "a", "sigma2", "sigma2_optimal"} <= set(out["stationarity"])
    entropy_sum = out["entropies"]["encoder"] - out["entropies"]["prior"] - out["entropies"]["decoder"]
    assert out["entropy_elbo"] == pytest.approx(entropy_sum, rel=1e-12)
    assert out["stationarity"]["sigma2_optimal"] == pytest.approx(out["stationarity"]["sigma2"]
                                                                   * out["stationarity"]["r"])


def test_estimate_table_names_every_figure_and_unit(tmp_path, trained_linear):
    x, _ = trained_linear
    data, ckpt = tmp_path / "x.npy", tmp_path / "m.safetensors"
    np.save(data, x[:300])
    run("train", "linear", "--data", str(data), "--out", str(ckpt), "--epochs", "2", "--quiet")
    text = run("estimate", str(ckpt), "--data", str(data), "--samples", "5")
    for figure in ("entropy ELBO", "Monte Carlo ELBO", "standard error", "5 samples", "nats/point",
                   "pPCA log-likelihood", "sigma^2 (optimal)", "eq. 14", "eq. 26"):
        assert figure in text

