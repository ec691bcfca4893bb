"""Checkpoints written in real codebases' conventions (the paper authors' repository, pytorch/examples), read
with the model's own methods, checked against the paper's stationarity conditions, and refused where the
entropy form does not apply. Every number is compared with an independent computation in the test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_checkpoints_wild import N_ROWS, independent_entropy_elbo, run, run_json, save_data
from torch import nn
from torch.distributions import Normal

# The authors' main.py / model.py convention: log-variances, LeakyReLU after both encoder heads and after the
# decoder output, a config object, torch.save(state_dict) to a file named `vae`.
AUTHORS_MAIN = '''
import types
import torch
from torch import nn


class VariationalAutoencoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.H, self.D, self.n_hidden = config.latent_dims, config.data_dims, config.n_hidden
        self.encoder_hidden = nn.Linear(self.D, self.n_hidden)
        self.encoder_hidden2 = nn.Linear(self.n_hidden, 2 * self.H)
        self.encoder_mu = nn.Linear(2 * self.H, self.H)
        self.encoder_logvar = nn.Linear(2 * self.H, self.H)
        self.enc_nonlinearity = nn.LeakyReLU()
        self.decoder_hidden = nn.Linear(self.H, 2 * self.H)
        self.decoder_hidden2 = nn.Linear(2 * self.H, self.n_hidden)
        self.decoder_out = nn.Linear(self.n_hidden, self.D)
        self.dec_nonlinearity = nn.LeakyReLU()
        self.logsigma2 = nn.Parameter(-2 * torch.ones(1))

    def encode(self, x):
        x = self.enc_nonlinearity(self.encoder_hidden(x))
        x = self.enc_nonlinearity(self.encoder_hidden2(x))
        return self.enc_nonlinearity(self.encoder_mu(x)), self.enc_nonlinearity(self.encoder_logvar(x))

    def decode(self, z):
        x = self.dec_nonlinearity(self.decoder_hidden2(self.dec_nonlinearity(self.decoder_hidden(z))))
        return self.dec_nonlinearity(self.decoder_out(x))


def build(latent_dims, data_dims, n_hidden):
    return VariationalAutoencoder(types.SimpleNamespace(latent_dims=latent_dims, data_dims=data_dims,
                                                        n_hidden=n_hidden))
'''


def authors_main_model(tmp_path: Path, d: int = 6, h: int = 4) -> tuple[Path, nn.Module, str]:
    source = tmp_path / "model.py"
    source.write_text(AUTHORS_MAIN)
    namespace: dict[str, object] = {}
    exec(compile(AUTHORS_MAIN, str(source), "exec"), namespace)  # noqa: S102 -- the test's own model code
    torch.manual_seed(0)
    vae = namespace["build"](h, d, 16).eval()
    with torch.no_grad():  # the raw head outputs about -3 (tau^2 ~ 0.05); LeakyReLU makes them ~ -0.03 (tau ~ 1)
        vae.encoder_logvar.weight.mul_(0.01)
        vae.encoder_logvar.bias.fill_(-3.0)
    path = tmp_path / "vae"
    torch.save(vae.state_dict(), path)
    return path, vae, f"{source}:build"


def authors_main_setup(tmp_path: Path, d: int, h: int) -> tuple[Path, nn.Module, torch.Tensor, Path, list[str]]:
    """The model saved as `vae`, data rows, and the --model flags that rebuild it from its own class."""
    path, vae, spec = authors_main_model(tmp_path, d, h)
    x = torch.randn(N_ROWS, d)
    kwargs = ["--model", spec, "--model-kwargs", f'{{"latent_dims": {h}, "data_dims": {d}, "n_hidden": 16}}']
    return path, vae, x, save_data(tmp_path, x), kwargs


def test_model_methods_are_authoritative_over_a_head_named_like_a_variance(tmp_path: Path) -> None:
    """The authors' main.py VAE: LeakyReLU after `encoder_logvar`; encode() decides tau, not the raw layer."""
    d, h = 6, 4
    path, vae, x, data, kwargs = authors_main_setup(tmp_path, d, h)
    with torch.no_grad():
        nu, log_tau2 = vae.encode(x)
    sigma2 = vae.logsigma2.detach().exp()
    est = run_json("estimate", path, "--data", data, "--samples", "0", *kwargs)
    assert est["entropy_elbo"] == pytest.approx(independent_entropy_elbo(log_tau2, sigma2, d), rel=1e-6)
    assert "authoritative" in est["extra"]["checkpoint"]["encoder"]["evidence"]
    assert any("prior p(z) = N(0, I)" in a["what"] for a in est["assumptions"])
    col = run_json("collapse", path, "--data", data, *kwargs)
    mine = Normal(torch.zeros_like(log_tau2.double()), (0.5 * log_tau2.double()).exp()).entropy().mean(0)
    assert col["mean_entropy"] == pytest.approx(mine.tolist(), abs=1e-4)
    assert col["counts"]["entropy"] == h  # tau ~ 1 through the LeakyReLU: all 4 collapsed (the raw head: none)
    assert col["assumptions"] and col["checkpoint"]["encoder"]["name"] == "encode()[1]"


# ---------------------------------------------------------------------------------------------- optimal variance


class MSEVAE(nn.Module):
    """A PyTorch-VAE-like MLP: encode -> [mu, log_var], decode -> mean; no decoder variance (an MSE loss)."""

    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d, 16), nn.ReLU())
        self.fc_mu, self.fc_var = nn.Linear(16, h), nn.Linear(16, h)
        self.decoder = nn.Sequential(nn.Linear(h, 16), nn.ReLU(), nn.Linear(16, d))


def test_optimal_decoder_variance_is_closed_form_and_matches_a_pass_at_that_variance(tmp_path: Path) -> None:
    """sigma*^2 = sigma^2 r from one pass; the ELBO there equals a second pass at --decoder-variance sigma*^2
    with the same samples, and no other sigma^2 gives a higher one."""
    torch.manual_seed(1)
    d, h = 5, 2
    vae = MSEVAE(d, h)
    path = tmp_path / "mse.pt"
    torch.save(vae.state_dict(), path)
    x = torch.randn(N_ROWS, d)
    data = save_data(tmp_path, x)
    reading = ["--activation", "relu", "--output-activation", "linear", "--no-head-activation"]  # untrained
    line = run("estimate", path, "--data", data, *reading).stderr
    assert "--decoder-variance optimal" in line
    opt = run_json("estimate", path, "--data", data, "--decoder-variance", "optimal", "--samples", "16", *reading)
    s2 = opt["stationarity"]["sigma2"]
    assert opt["stationarity"]["r"] == 1.0 and "sigma*^2" in opt["note"]
    # independent: sigma*^2 is the mean squared residual per dimension over our own samples of q
    with torch.no_grad():
        t = vae.encoder(x)
        nu, log_tau2 = vae.fc_mu(t), vae.fc_var(t)
        z = nu + (0.5 * log_tau2).exp() * torch.randn(400, *nu.shape)
        resid = (vae.decoder(z) - x).double().pow(2).sum(-1).mean() / d
    assert s2 == pytest.approx(float(resid), rel=0.05)
    again = run_json("estimate", path, "--data", data, "--decoder-variance", repr(s2), "--samples", "16", *reading)
    assert opt["mc_elbo"] == pytest.approx(again["mc_elbo"], rel=1e-9)
    assert opt["mc_stderr"] == pytest.approx(again["mc_stderr"], rel=1e-6)
    assert opt["mc_sampling_stderr"] == pytest.approx(again["mc_sampling_stderr"], rel=1e-6)
    for factor in (0.8, 1.25):
        other = run_json("estimate", path, "--data", data, "--decoder-variance", repr(s2 * factor), "--samples",
                         "16", *reading)
        assert other["mc_elbo"] < opt["mc_elbo"]


# ---------------------------------------------------------------------------------------------- warnings


def test_warnings_name_r_and_the_latents_whose_a_h_is_far_from_1(tmp_path: Path) -> None:
    """A_h and r computed here independently; the tool warns exactly for those further than 0.1 from 1."""
    d, h = 6, 4
    path, vae, x, data, kwargs = authors_main_setup(tmp_path, d, h)
    est = run_json("estimate", path, "--data", data, "--samples", "8", *kwargs)
    with torch.no_grad():
        nu, log_tau2 = vae.encode(x)
    a = (nu.double() ** 2 + log_tau2.double().exp()).mean(0)
    assert est["stationarity"]["a"] == pytest.approx(a.tolist(), rel=1e-5)
    far = [k for k in range(h) if abs(float(a[k]) - 1) > 0.1]
    text = " ".join(est["warnings"])
    assert ("a_h" in text) == bool(far) and all(f"z{k} " in text for k in far)
    r = est["stationarity"]["r"]
    assert ("r = " in text) == (abs(r - 1) > 0.1)
    assert abs(r - 1) > 0.1 and "not this checkpoint's ELBO" in text  # sigma^2 = e^-2 is far from the residuals
    table = run("estimate", path, "--data", data, "--samples", "8", *kwargs)
    assert table.exit_code == 0 and table.stderr.count("warning:") == len(est["warnings"])
