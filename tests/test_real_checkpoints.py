"""Checkpoints written in real codebases' conventions (the paper authors' repository, pytorch/examples), read
with the model's own methods, checked against the paper's stationarity conditions, and refused where the
entropy form does not apply. Every number is compared with an independent computation in the test."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_checkpoints_wild import (
    N_ROWS,
    PyTorchVAELayout,
    assert_within_4_se,
    independent_entropy_elbo,
    independent_mc_elbo,
    run,
    run_json,
    save_data,
)
from torch import nn
from torch.distributions import Normal, kl_divergence

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


# ------------------------------------------------------------------------------------- the authors' files, no flags
# Models written in the conventions of the paper authors' repository (verification/VAE.py, main.py + model.py,
# streamingVAE/linearVAE.py): their forward() returns the lower bound they train on; they are trained briefly
# here and saved as they save them, torch.save(state_dict) to a file named `vae`.


def ppca_rows(n: int = 400, d: int = 5, h: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    w, mu = torch.rand(d, h, generator=gen), torch.rand(d, generator=gen)
    return torch.randn(n, h, generator=gen) @ w.T + mu + 0.1 * torch.randn(n, d, generator=gen)


def train_bound(model: nn.Module, x: torch.Tensor, steps: int = 600, lr: float = 1e-2) -> nn.Module:
    """Adam on -forward(x), the lower bound the model computes itself (full batch)."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (-model(x)).backward()
        opt.step()
    return model.eval()


def dnn(units: list[int]) -> nn.Sequential:
    """verification/VAE.py's construct_dnn convention: Linear layers, ReLU between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(units[:-1], units[1:], strict=True)):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(units) - 2 else [])
    return nn.Sequential(*layers)


def gaussian_bound(x: torch.Tensor, nu: torch.Tensor, tau: torch.Tensor, decode, samples: int = 10) -> torch.Tensor:  # noqa: ANN001
    """The authors' bound: sum_n mean_s log N(x; mu, sigma) - KL(q || N(0, 1))."""
    z = nu + tau * torch.randn(samples, *nu.shape)
    mean, sigma = decode(z)
    return Normal(mean, sigma).log_prob(x).mean(0).sum() - kl_divergence(Normal(nu, tau), Normal(0.0, 1.0)).sum()


class VerificationVAE1(nn.Module):
    """verification/VAE.py VAE1: the encoder outputs 2H, tau = softplus(second half); sigma = softplus(noise_std)."""

    def __init__(self, d: int, h: int, hidden: list[int]) -> None:
        super().__init__()
        self.h = h
        self.encoder, self.decoder = dnn([d, *hidden, 2 * h]), dnn([h, *hidden, d])
        self.noise_std = nn.Parameter(torch.zeros(1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.encoder(x)
        return out[:, : self.h], nn.functional.softplus(out[:, self.h:])

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(z), nn.functional.softplus(self.noise_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_bound(x, *self.encode(x), self.decode)


class VerificationVAE3(VerificationVAE1):
    """verification/VAE.py VAE3: the decoder outputs 2D, sigma(z) = softplus(second half)."""

    def __init__(self, d: int, h: int, hidden: list[int]) -> None:
        super().__init__(d, h, hidden)
        self.d = d
        self.decoder = dnn([h, *hidden, 2 * d])
        del self.noise_std

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.decoder(z)
        return out[..., : self.d], nn.functional.softplus(out[..., self.d:])


class VerificationLinearVAE(nn.Module):
    """verification/VAE.py LinearVAE: a free encoder bias, tau = softplus(q_z_std), sigma = softplus(noise_std)."""

    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.encoder, self.decoder = nn.Linear(d, h), nn.Linear(h, d)
        self.noise_std = nn.Parameter(torch.zeros(1))
        self.q_z_std = nn.Parameter(torch.zeros(h))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x), nn.functional.softplus(self.q_z_std).expand(len(x), -1)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(z), nn.functional.softplus(self.noise_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_bound(x, *self.encode(x), self.decode)


class StreamingLinearVAE(VerificationLinearVAE):
    """streamingVAE/linearVAE.py: the same linear VAE, its softplus parameters named sigma_param and tau_param."""

    def __init__(self, d: int, h: int) -> None:
        super().__init__(d, h)
        del self.noise_std, self.q_z_std
        self.sigma_param, self.tau_param = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(h))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x), nn.functional.softplus(self.tau_param).expand(len(x), -1)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(z), nn.functional.softplus(self.sigma_param)


class MainPyVAE(nn.Module):
    """main.py + model.py: log-variances, LeakyReLU after both heads and after the decoder output."""

    def __init__(self, d: int, h: int, n_hidden: int = 16) -> None:
        super().__init__()
        self.encoder_hidden, self.encoder_hidden2 = nn.Linear(d, n_hidden), nn.Linear(n_hidden, 2 * h)
        self.encoder_mu, self.encoder_logvar = nn.Linear(2 * h, h), nn.Linear(2 * h, h)
        self.decoder_hidden, self.decoder_hidden2 = nn.Linear(h, 2 * h), nn.Linear(2 * h, n_hidden)
        self.decoder_out = nn.Linear(n_hidden, d)
        self.logsigma2 = nn.Parameter(torch.zeros(1))
        self.act = nn.LeakyReLU()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.act(self.encoder_hidden2(self.act(self.encoder_hidden(x))))
        return self.act(self.encoder_mu(t)), (0.5 * self.act(self.encoder_logvar(t))).exp()

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.act(self.decoder_out(self.act(self.decoder_hidden2(self.act(self.decoder_hidden(z))))))
        return out, (0.5 * self.logsigma2).exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_bound(x, *self.encode(x), self.decode)


def tau_log_var(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return 2 * model.encode(x)[1].double().log().expand(len(x), -1)


AUTHORS = {
    "verification VAE1": lambda d, h: VerificationVAE1(d, h, [16, 16]),
    "verification VAE3": lambda d, h: VerificationVAE3(d, h, [16, 16]),
    "verification LinearVAE": VerificationLinearVAE,
    "streamingVAE LinearVAE": StreamingLinearVAE,
    "main.py VAE-1": MainPyVAE,
}


@pytest.mark.parametrize("family", list(AUTHORS))
def test_authors_checkpoints_read_right_with_no_flags(tmp_path: Path, family: str) -> None:
    d, h = 5, 2
    x = ppca_rows(d=d)
    torch.manual_seed(1)
    vae = train_bound(AUTHORS[family](d, h), x)
    path = tmp_path / "vae"
    torch.save(vae.state_dict(), path)
    data = save_data(tmp_path, x)
    est = run_json("estimate", path, "--data", data, "--samples", "64")
    log_tau2 = tau_log_var(vae, x)
    if family != "verification VAE3":  # sigma is a constant: the entropy ELBO is exact (eq. 14)
        sigma2 = vae.decode(torch.zeros(1, h))[1].detach().double() ** 2
        assert est["entropy_elbo"] == pytest.approx(independent_entropy_elbo(log_tau2, sigma2, d), rel=1e-4)
    else:
        assert_vae3_entropy_elbo(est, vae, x, h)

    def decode(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, sigma = vae.decode(z)
        return mean, (sigma**2).expand_as(mean)

    with torch.no_grad():
        nu = vae.encode(x)[0]
    mine, se = independent_mc_elbo(lambda _: (nu, log_tau2.float()), decode, torch.tensor(1.0), x, 64)
    assert_within_4_se(est, mine, se)
    col = run_json("collapse", path, "--data", data)
    entropies = Normal(0.0, (0.5 * log_tau2).exp()).entropy().mean(0)
    assert col["mean_entropy"] == pytest.approx(entropies.tolist(), abs=1e-4)
    assert all("evidence" in a and "override" in a for a in col["assumptions"])
    if "LinearVAE" in family:  # eq. 26 with W, mu0 the decoder's weight and bias, as the authors do
        w, mu0 = vae.decoder.weight.detach().double(), vae.decoder.bias.detach().double()
        c = w @ w.T + float(sigma2) * torch.eye(d, dtype=torch.float64)
        centred = x.double() - mu0
        scatter = centred.T @ centred / len(x)
        mine_ll = -0.5 * (d * math.log(2 * math.pi) + torch.logdet(c) + torch.trace(torch.linalg.solve(c, scatter)))
        assert est["ppca_loglik"] == pytest.approx(float(mine_ll), rel=1e-6)


# ---------------------------------------------------------------------------------------------- refusals

EXAMPLES_VAE = '''
import torch
from torch import nn


class VAE(nn.Module):
    """pytorch/examples vae/main.py's layout: fc1, fc21 (mu), fc22 (logvar), fc3, fc4; sigmoid output, BCE loss."""

    def __init__(self, d=12, h=2, hidden=16):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(d, hidden), nn.Linear(hidden, h), nn.Linear(hidden, h)
        self.fc3, self.fc4 = nn.Linear(h, hidden), nn.Linear(hidden, d)

    def encode(self, x):
        h1 = torch.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def decode(self, z):
        return torch.sigmoid(self.fc4(torch.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x)
        recon = self.decode(mu + torch.randn_like(mu) * (0.5 * logvar).exp())
        bce = nn.functional.binary_cross_entropy(recon, x, reduction="sum")
        return -(bce + 0.5 * torch.sum(mu.pow(2) + logvar.exp() - logvar - 1))
'''


def test_bernoulli_decoder_of_pytorch_examples_is_refused_and_collapse_still_works(tmp_path: Path) -> None:
    (tmp_path / "examples_vae.py").write_text(EXAMPLES_VAE)
    namespace: dict[str, object] = {}
    exec(compile(EXAMPLES_VAE, "examples_vae.py", "exec"), namespace)  # noqa: S102 -- the test's own model code
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(N_ROWS, 2, generator=gen) @ torch.rand(2, 12, generator=gen) > 0.6).float()  # binary pixels
    torch.manual_seed(0)
    vae = train_bound(namespace["VAE"](), x, steps=300)
    path = tmp_path / "vae.pth"
    torch.save(vae.state_dict(), path)
    data = save_data(tmp_path, x)
    for extra in ([], ["--decoder-variance", "1"], ["--decoder-variance", "optimal"],
                  ["--model", f"{tmp_path / 'examples_vae.py'}:VAE", "--decoder-variance", "1"]):
        result = run("estimate", path, "--data", data, *extra)
        assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
        assert "Bernoulli" in result.stderr and "sigmoid" in result.stderr and "collapse" in result.stderr
    col = run_json("collapse", path, "--data", data)  # relu: the common default, which nothing clearly beats
    with torch.no_grad():
        log_tau2 = vae.encode(x)[1].double()
    entropies = Normal(0.0, (0.5 * log_tau2).exp()).entropy().mean(0)
    assert col["mean_entropy"] == pytest.approx(entropies.tolist(), abs=1e-4)
    stated = run_json("estimate", path, "--data", data, "--output-activation", "sigmoid", "--decoder-variance", "1",
                      "--activation", "relu",
                      "--samples", "8")  # the user says the sigmoid is a Gaussian mean: a Gaussian ELBO at sigma^2 1
    mine, se = independent_mc_elbo(vae.encode, vae.decode, torch.tensor(1.0), x, 8)
    assert abs(stated["mc_elbo"] - mine) <= 4 * math.hypot(se, stated["mc_sampling_stderr"])


def test_priors_other_than_n01_and_bce_losses_are_refused(tmp_path: Path) -> None:
    d, h = 4, 2
    vae = MSEVAE(d, h)
    data = save_data(tmp_path, torch.rand(N_ROWS, d))
    path = tmp_path / "vamp.pt"
    torch.save({**vae.state_dict(), "pseudo_inputs": torch.rand(10, d)}, path)
    for command in ("inspect", "collapse", "estimate"):
        line = run(command, path, *(["--data", data] if command != "inspect" else [])).stderr
        assert line.count("\n") == 1 and "'pseudo_inputs'" in line and "not N(0, I)" in line
    ckpt = tmp_path / "bce.ckpt"  # a Lightning checkpoint whose hyper_parameters name a BCE loss
    torch.save({"state_dict": {f"model.{k}": v for k, v in vae.state_dict().items()}, "epoch": 1, "global_step": 9,
                "pytorch-lightning_version": "2.6.6", "hyper_parameters": {"recon_loss": "bce"}}, ckpt)
    reading = ["--activation", "relu", "--output-activation", "linear", "--no-head-activation"]
    line = run("estimate", ckpt, "--data", data, "--decoder-variance", "1", *reading).stderr
    assert line.count("\n") == 1 and "'bce'" in line and "Bernoulli" in line
    assert run("collapse", ckpt, "--data", data, *reading).exit_code == 0


# ---------------------------------------------------------------------------------------------- user models' shapes

SHAPES_MODELS = '''
import torch
from torch import nn


class Isotropic(nn.Module):
    """encode -> (mu (B, H), log_var (B, 1)): one variance per data point shared by the H latents."""

    def __init__(self, d=5, h=3):
        super().__init__()
        self.enc, self.fc_mu, self.fc_s = nn.Linear(d, 8), nn.Linear(8, h), nn.Linear(8, 1)
        self.dec = nn.Linear(h, d)
        self.log_sigma2 = nn.Parameter(torch.tensor(-1.0))

    def encode(self, x):
        t = torch.tanh(self.enc(x))
        return self.fc_mu(t), self.fc_s(t)

    def decode(self, z):
        return self.dec(z)


class Shifty(Isotropic):
    """Its encoder's outputs change shape with the batch: H latents for the probe, H - 1 for big batches."""

    def encode(self, x):
        mu, s = super().encode(x)
        return (mu, s) if len(x) <= 2 else (mu[:, :-1], s)


class TwoVariances(Isotropic):
    """A `log_sigma2` parameter AND a decode() returning (mean, log-variance): two decoder-variance candidates."""

    def decode(self, z):
        return self.dec(z), torch.full((self.dec.out_features,), 0.3)
'''


def test_isotropic_encoder_variance_shape_changes_and_two_decoder_variances(tmp_path: Path) -> None:
    source = tmp_path / "shapes_models.py"
    source.write_text(SHAPES_MODELS)
    namespace: dict[str, object] = {}
    exec(compile(SHAPES_MODELS, str(source), "exec"), namespace)  # noqa: S102 -- the test's own model code
    d, h = 5, 3
    torch.manual_seed(2)
    vae = namespace["Isotropic"]().eval()
    path = tmp_path / "iso.pt"
    torch.save(vae.state_dict(), path)
    x = torch.randn(N_ROWS, d)
    data = save_data(tmp_path, x)
    spec = f"{source}:Isotropic"
    info = run_json("inspect", path, "--model", spec)
    assert "isotropic" in info["encoder"]["evidence"] and info["h"] == h
    est = run_json("estimate", path, "--data", data, "--model", spec, "--samples", "0")
    with torch.no_grad():
        log_tau2 = vae.encode(x)[1].expand(-1, h)  # broadcast by hand: H latents with one tau each row
    sigma2 = vae.log_sigma2.detach().exp()
    assert est["entropy_elbo"] == pytest.approx(independent_entropy_elbo(log_tau2, sigma2, d), rel=1e-6)
    line = run("estimate", path, "--data", data, "--model", f"{source}:Shifty", "--samples", "0").stderr
    assert line.count("\n") == 1 and "change shape" in line  # found in the pass, off a terminal: one line
    line = run("inspect", path, "--model", f"{source}:TwoVariances").stderr
    assert line.count("\n") == 1 and "'log_sigma2'" in line and "decode()[1]" in line and "--decoder-var" in line
    picked = run_json("inspect", path, "--model", f"{source}:TwoVariances", "--decoder-var", "decode()[1]")
    assert picked["decoder"]["kind"] == "per-dim" and picked["decoder"]["value"] == pytest.approx([math.exp(0.3)] * d)
    param = run_json("inspect", path, "--model", f"{source}:TwoVariances", "--decoder-var", "log_sigma2")
    assert param["decoder"]["value"] == pytest.approx(math.exp(-1.0))


def test_authors_celeba_vanilla_vae_with_logsigma2_needs_no_flags(tmp_path: Path) -> None:
    """model_CelebA.py: PyTorch-VAE's VanillaVAE layout plus a learned scalar `logsigma2`, saved as `vae`."""
    torch.manual_seed(4)
    vae = PyTorchVAELayout().eval()
    state = {**vae.state_dict(), "logsigma2": torch.tensor([-1.5])}
    path = tmp_path / "vae"
    torch.save(state, path)
    x = torch.rand(N_ROWS, 3, 8, 8) * 2 - 1
    data = save_data(tmp_path, x)
    est = run_json("estimate", path, "--data", data, "--samples", "32")
    with torch.no_grad():
        log_var = vae.encode(x)[1]
    sigma2 = torch.tensor(math.exp(-1.5))
    assert "VanillaVAE" in est["extra"]["checkpoint"]["model_kind"]
    assert est["entropy_elbo"] == pytest.approx(independent_entropy_elbo(log_var, sigma2, 192), rel=1e-6)
    mine, se = independent_mc_elbo(vae.encode, vae.decode, sigma2, x, 32)
    assert_within_4_se(est, mine, se)


class MainPyVAE2Sigmoid(MainPyVAE):
    """main.py's VAE-2 on MNIST-like data: a learned prior variance `logalpha2`, a sigmoid decoder output."""

    def __init__(self, d: int, h: int) -> None:
        super().__init__(d, h)
        self.logalpha2 = nn.Parameter(torch.ones(h))

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.act(self.decoder_hidden2(self.act(self.decoder_hidden(z))))
        return torch.sigmoid(self.decoder_out(t)), (0.5 * self.logsigma2).exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nu, tau = self.encode(x)
        z = nu + tau * torch.randn(10, *nu.shape)
        mean, sigma = self.decode(z)
        prior = Normal(torch.zeros_like(self.logalpha2), (0.5 * self.logalpha2).exp())
        return Normal(mean, sigma).log_prob(x).mean(0).sum() - kl_divergence(Normal(nu, tau), prior).sum()


def test_authors_vae2_with_a_sigmoid_output_amends_the_convention_where_the_data_insist(tmp_path: Path) -> None:
    """main.py names mean LeakyReLU everywhere; the MNIST variant's sigmoid output is taken because the data
    clearly prefer it, the rest of the convention kept; the learned prior A enters the entropy ELBO (eq. 8)."""
    d, h = 5, 2
    x = ppca_rows(d=d)
    x = (x - x.min(0).values) / (x.max(0).values - x.min(0).values)  # min-max scaled to [0, 1]
    torch.manual_seed(1)
    vae = train_bound(MainPyVAE2Sigmoid(d, h), x)
    path = tmp_path / "vae"
    torch.save(vae.state_dict(), path)
    est = run_json("estimate", path, "--data", save_data(tmp_path, x), "--samples", "0")
    assumed = " | ".join(a["what"] for a in est["assumptions"])
    assert "output activation sigmoid" in assumed and "hidden activation leaky_relu" in assumed
    assert "also applied after the encoder heads" in assumed and "logalpha2" in assumed
    with torch.no_grad():
        tau = vae.encode(x)[1].double()
    log_a = vae.logalpha2.detach().double()
    mine = (Normal(0.0, tau).entropy().sum(-1).mean() - Normal(torch.zeros(h, dtype=torch.float64),
            (0.5 * log_a).exp()).entropy().sum() - d * Normal(0.0, (0.5 * vae.logsigma2.detach().double()).exp())
            .entropy().sum())
    assert est["entropy_elbo"] == pytest.approx(float(mine), rel=1e-4)


# ---------------------------------------------------------------------------------------------- the reading rule


class OffsetModel:
    """A stand-in whose ELBO per row is known in closed form: q = N(0, 1) (KL 0), mu = x + offset, sigma^2 = 1,
    so every row scores -D/2 log(2 pi) - D offset^2 / 2: readings differ only by their offsets."""

    latent_dim, decoder_variance, prior_log_var = 1, "scalar", None

    def __init__(self, offset: float, x: torch.Tensor) -> None:
        self.offset, self.x = offset, x

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(len(x), 1), torch.zeros(len(x), 1)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reps = len(z) // len(self.x)
        return self.x.repeat(reps, 1) + self.offset, torch.zeros(())


def test_reading_rule_keeps_the_convention_amends_it_or_stops_with_the_list() -> None:
    from entropy_elbo.checkpoints.readings import AmbiguousReading, Reading, choose

    x = torch.randn(256, 3)
    conv, b, c = Reading("relu"), Reading("relu", "sigmoid"), Reading("relu", "tanh")
    far = Reading("tanh", "sigmoid")

    def chosen(offsets: dict[Reading, float]) -> Reading:
        return choose(lambda r: OffsetModel(offsets[r], x), list(offsets), x, convention="a convention")[0]

    # the score gap is D offset^2 / 2 per row: 0.3 -> 0.135 nats, far above the 0.01 margin; 0.05 -> 0.004 below
    assert chosen({conv: 0.05, b: 0.0, c: 0.3}) == conv  # b better by 0.004 nats/point: not clear, convention kept
    assert chosen({conv: 0.3, b: 0.0, c: 0.3, far: 0.0}) == b  # b clearly better and nearest (far ties it)
    with pytest.raises(AmbiguousReading) as err:
        chosen({conv: 0.3, b: 0.0, c: 0.02})  # two amendments at the same distance fit about equally: stop
    assert "--output-activation sigmoid" in str(err.value) and "--output-activation tanh" in str(err.value)
    assert choose(lambda r: OffsetModel({conv: 0.3, b: 0.0}[r], x), [conv, b], x)[0] == b  # no convention: clear


VERIFICATION_CLASS = '''
import torch
from torch import nn


class VAE1(nn.Module):
    """verification/VAE.py's VAE1 layout: no encode(); the encoder outputs 2H, the second half a softplus std."""

    def __init__(self, latent_dim=2, output_dim=5, hidden=16):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(nn.Linear(output_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, output_dim))
        self.noise_std = nn.Parameter(torch.zeros(1))
'''


def test_authors_verification_class_with_model_flag_splits_its_encoder_output(tmp_path: Path) -> None:
    """--model with the authors' class (no encode()): the (B, 2H) encoder output is split, the softplus std kept."""
    d, h = 5, 2
    x = ppca_rows(d=d)
    torch.manual_seed(1)
    vae = train_bound(VerificationVAE1(d, h, [16]), x, steps=300)
    path = tmp_path / "vae"
    torch.save(vae.state_dict(), path)
    (tmp_path / "VAE.py").write_text(VERIFICATION_CLASS)
    data = save_data(tmp_path, x)
    est = run_json("estimate", path, "--data", data, "--samples", "0", "--model", f"{tmp_path / 'VAE.py'}:VAE1")
    assert est["extra"]["checkpoint"]["encoder"]["param"] == "softplus_std" and est["h"] == h
    sigma2 = nn.functional.softplus(vae.noise_std.detach()).double() ** 2
    assert est["entropy_elbo"] == pytest.approx(independent_entropy_elbo(tau_log_var(vae, x), sigma2, d), rel=1e-4)



def assert_vae3_entropy_elbo(est: dict, vae: nn.Module, x: torch.Tensor, h: int, s: int = 256) -> None:
    """VAE-3's entropy ELBO (Thm. 3): mean_n H[q_n] - H[p(z)] - mean_n E_q sum_d 0.5 log(2 pi e sigma_d^2(z)), the
    decoder entropy sampled here by torch.distributions over our own fixed draws; both agree within 4 joint SE."""
    with torch.no_grad():
        nu, tau = (t.double() for t in vae.encode(x))
        z = nu + tau * torch.randn(s, *nu.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
        per_row = Normal(0.0, vae.decode(z.float())[1].double()).entropy().sum(-1).mean(0)  # (N,) E_q over draws
    dec_ent, dec_se = float(per_row.mean()), float(per_row.std()) / math.sqrt(len(x))
    enc_ent = float(Normal(nu, tau).entropy().sum(-1).mean())
    prior_ent = float(Normal(0.0, torch.ones(h, dtype=torch.float64)).entropy().sum())
    mine = enc_ent - prior_ent - dec_ent
    assert est["entropies"]["encoder"] == pytest.approx(enc_ent, rel=1e-5)
    assert est["entropies"]["prior"] == pytest.approx(prior_ent, rel=1e-9)
    se = math.hypot(est["decoder_entropy_stderr"], dec_se)
    assert abs(est["entropy_elbo"] - mine) <= 4 * se, (est["entropy_elbo"], mine, se)
    assert se < 0.02 * abs(dec_ent)  # sharp enough to catch a log-std or a variance read for the softplus std


class MainPyVAE0(MainPyVAE2Sigmoid):
    """main.py's VAE-0 on MNIST-like data: `logsigma2` frozen at exactly 0 (requires_grad=False, sigma^2 = 1 fixed),
    a sigmoid decoder output, N(0, I) prior."""

    def __init__(self, d: int, h: int) -> None:
        MainPyVAE.__init__(self, d, h)
        self.logsigma2 = nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_bound(x, *self.encode(x), self.decode)


def test_authors_vae0_frozen_logsigma2_is_a_fixed_variance_not_a_learned_one(tmp_path: Path) -> None:
    """A stored log-variance of bit-exactly 0.0 was never trained: sigma^2 = 1 fixed, so no entropy ELBO is claimed,
    the MC ELBO is at sigma^2 = 1, and `--decoder-variance 1` is not refused as Bernoulli (the named parameter is
    the model's own evidence of a Gaussian decoder); `--decoder-var logsigma2` claims it learned (Thm. 2)."""
    d, h = 5, 2
    x = ppca_rows(d=d)
    x = (x - x.min(0).values) / (x.max(0).values - x.min(0).values)  # [0, 1] data, as MNIST
    torch.manual_seed(1)
    vae = train_bound(MainPyVAE0(d, h), x, steps=300)
    assert float(vae.logsigma2) == 0.0
    path, data = tmp_path / "vae", save_data(tmp_path, x)
    torch.save(vae.state_dict(), path)
    est = run_json("estimate", path, "--data", data, "--samples", "64")
    assert est["entropy_elbo"] is None and est["decoder_variance"] == "fixed"
    assert any("exactly 0.0" in a["evidence"] and "--decoder-var logsigma2" in a["override"]
               for a in est["assumptions"])
    log_tau2 = tau_log_var(vae, x)
    with torch.no_grad():
        nu = vae.encode(x)[0]
    mine, se = independent_mc_elbo(lambda _: (nu, log_tau2.float()),
                                   lambda z: (vae.decode(z)[0], torch.ones(d)), torch.tensor(1.0), x, 64)
    assert_within_4_se(est, mine, se)
    given = run_json("estimate", path, "--data", data, "--samples", "64", "--decoder-variance", "1")
    assert given["mc_elbo"] == pytest.approx(est["mc_elbo"], rel=1e-9)
    learned = run_json("estimate", path, "--data", data, "--samples", "0", "--decoder-var", "logsigma2")
    assert learned["entropy_elbo"] == pytest.approx(
        independent_entropy_elbo(log_tau2, torch.tensor(1.0), d), rel=1e-4)


def test_vae3_entropy_elbo_sampling_error_matches_its_spread_over_seeds(tmp_path: Path) -> None:
    """VAE-3's entropy ELBO samples its decoder entropy (Thm. 3, eq. 22): the reported sampling error,
    sqrt(sum_n var_s(H_n) / S) / N, must match the standard deviation of the estimate over 300 seeds on the same
    data (within 20%: the spread of 300 draws is itself known to about 4%, so 20% is 5 of its standard errors)."""
    from entropy_elbo.checkpoints import LoadOptions, load_model
    from entropy_elbo.elbo import estimate

    d, h, seeds, s = 5, 2, 300, 8
    x = ppca_rows(n=100, d=d)
    torch.manual_seed(1)
    vae = train_bound(VerificationVAE3(d, h, [16, 16]), x, steps=200)
    path, data = tmp_path / "vae", save_data(tmp_path, x)
    torch.save(vae.state_dict(), path)
    model = load_model(path, options=LoadOptions(rows=x)).model  # read as the CLI reads it, with no flags
    with torch.no_grad():
        nu, tau = (t.double() for t in vae.encode(x))
    draws = []
    for seed in range(seeds):  # the same spread by our own sampling with torch.distributions
        z = nu + tau * torch.randn(s, *nu.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        with torch.no_grad():
            draws.append(float(Normal(0.0, vae.decode(z.float())[1].double()).entropy().sum(-1).mean()))
    runs = [estimate(model, [x], samples=s, seed=seed) for seed in range(seeds)]
    spread = float(torch.tensor([r.entropy_elbo for r in runs], dtype=torch.float64).std())
    reported = float(torch.tensor([r.entropy_elbo_sampling_stderr for r in runs], dtype=torch.float64).mean())
    assert reported == pytest.approx(spread, rel=0.2)
    assert reported == pytest.approx(float(torch.tensor(draws, dtype=torch.float64).std()), rel=0.2)
    assert reported < runs[0].decoder_entropy_stderr  # not the spread over data points
    est = run_json("estimate", path, "--data", data, "--samples", str(s))
    assert est["entropy_elbo_sampling_stderr"] == pytest.approx(spread, rel=0.2)
    table = run("estimate", path, "--data", data, "--samples", str(s)).stdout
    assert "of the sampled decoder entropy" in table
