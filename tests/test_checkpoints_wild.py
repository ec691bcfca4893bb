"""Checkpoints from the wild: every convention is built here, saved, read back by the real CLI, and the
tool's numbers are checked against an independent computation (torch.distributions, closed forms)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from torch import nn
from torch.distributions import Normal, kl_divergence

from entropy_elbo.checkpoints import LoadOptions, load_model, save_checkpoint
from entropy_elbo.cli import main
from entropy_elbo.models import ModelConfig, build_model

N_ROWS = 200


# ---------------------------------------------------------------------------------------------- helpers


def run(*args: str) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line_error(result: object) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def save_data(tmp_path: Path, x: torch.Tensor) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, x.numpy().astype(np.float32))
    return path


def independent_entropy_elbo(log_tau2: torch.Tensor, sigma2: torch.Tensor, d: int) -> float:
    """Thm. 2 eq. 14 from torch.distributions entropies: mean_n H[q_n] - H[p(z)] - H[p(x|z)]."""
    log_tau2, sigma2 = log_tau2.double(), sigma2.double()
    enc = Normal(torch.zeros_like(log_tau2), (0.5 * log_tau2).exp()).entropy().sum(-1).mean()
    prior = Normal(torch.zeros(log_tau2.shape[-1], dtype=torch.float64), 1.0).entropy().sum()
    dec = Normal(torch.zeros_like(sigma2), sigma2.sqrt()).entropy()
    dec = dec.sum() if dec.numel() == d else dec.reshape(()) * d
    return float(enc - prior - dec)


@torch.no_grad()
def independent_mc_elbo(encode, decode, sigma2: torch.Tensor, x: torch.Tensor, samples: int,  # noqa: ANN001
                        seed: int = 123) -> tuple[float, float]:
    """Eq. 2 by our own sampling with torch.distributions; returns (mean, sampling standard error)."""
    gen = torch.Generator().manual_seed(seed)
    nu, log_tau2 = encode(x)
    tau = (0.5 * log_tau2.double()).exp().expand_as(nu)
    kl = kl_divergence(Normal(nu.double(), tau), Normal(0.0, 1.0)).sum(-1)  # (N,)
    lls = []
    for _ in range(samples):
        z = nu + tau.float() * torch.randn(nu.shape, generator=gen)
        out = decode(z)
        mean, var = out if isinstance(out, tuple) else (out, sigma2)  # a variance network returns its own
        mean = mean.double().reshape(x.shape)
        lls.append(Normal(mean, var.double().sqrt()).log_prob(x.double()).flatten(1).sum(-1))
    ll = torch.stack(lls)  # (S, N)
    f = ll.mean(0) - kl
    se = math.sqrt(float(ll.var(0).sum()) / samples) / x.shape[0]
    return float(f.mean()), se


def assert_within_4_se(tool: dict, mine: float, my_se: float) -> None:
    se = math.sqrt(tool["mc_sampling_stderr"] ** 2 + my_se**2)
    assert abs(tool["mc_elbo"] - mine) <= 4 * se, (tool["mc_elbo"], mine, se)
    assert se < 0.05 * abs(mine)  # the check is sharp enough to catch a wrong variance or a wrong decoder


def import_file(path: Path, name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------- PyTorch-VAE + Lightning

VANILLA = '''
import torch
from torch import nn


class VanillaVAE(nn.Module):
    """PyTorch-VAE layout, shrunk to 8x8 images: conv encoder, fc_mu / fc_var, transposed-conv decoder."""

    def __init__(self, in_channels, latent_dim, hidden_dims=(4, 8)):
        super().__init__()
        self.latent_dim, self.last = latent_dim, hidden_dims[-1]
        blocks, c = [], in_channels
        for h in hidden_dims:
            blocks.append(nn.Sequential(nn.Conv2d(c, h, 3, stride=2, padding=1), nn.BatchNorm2d(h), nn.LeakyReLU()))
            c = h
        self.encoder = nn.Sequential(*blocks)
        self.fc_mu = nn.Linear(self.last * 4, latent_dim)
        self.fc_var = nn.Linear(self.last * 4, latent_dim)
        self.decoder_input = nn.Linear(latent_dim, self.last * 4)
        r = list(hidden_dims)[::-1]
        self.decoder = nn.Sequential(nn.ConvTranspose2d(r[0], r[1], 3, 2, 1, output_padding=1), nn.BatchNorm2d(r[1]),
                                     nn.LeakyReLU())
        self.final_layer = nn.Sequential(nn.ConvTranspose2d(r[1], r[1], 3, 2, 1, output_padding=1), nn.LeakyReLU(),
                                         nn.Conv2d(r[1], in_channels, 3, padding=1), nn.Tanh())

    def encode(self, x):
        h = torch.flatten(self.encoder(x), start_dim=1)
        return [self.fc_mu(h), self.fc_var(h)]

    def decode(self, z):
        h = self.decoder_input(z).view(-1, self.last, 2, 2)
        return self.final_layer(self.decoder(h))

    def forward(self, x):
        mu, log_var = self.encode(x)
        return [self.decode(mu), x, mu, log_var]
'''


def test_lightning_vanilla_vae_fixed_variance_mc_elbo(tmp_path: Path) -> None:
    (tmp_path / "vanilla.py").write_text(VANILLA)
    torch.manual_seed(0)
    vae = import_file(tmp_path / "vanilla.py", "vanilla_for_test").VanillaVAE(1, 3).eval()
    for m in vae.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial running statistics, as after training
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    ckpt = tmp_path / "epoch=3.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in vae.state_dict().items()}, "epoch": 3, "global_step": 40,
                "pytorch-lightning_version": "1.9.0", "hyper_parameters": {"latent_dim": 3}}, ckpt)
    x = torch.rand(N_ROWS, 1, 8, 8) * 2 - 1
    data = save_data(tmp_path, x)
    spec = ["--model", f"{tmp_path / 'vanilla.py'}:VanillaVAE", "--model-kwargs", '{"in_channels": 1, "latent_dim": 3}']

    info = run_json("inspect", ckpt, "--data", data, *spec)
    assert (info["fmt"], info["h"], info["d"]) == ("lightning", 3, 64)
    assert info["decoder"]["kind"] == "fixed" and info["decoder"]["value"] is None
    assert info["encoder"]["name"] == "encode()[1]" and info["encoder"]["param"] == "logvar"
    assert "'fc_var'" in info["encoder"]["evidence"]  # named like the head, read through the model's own encode()

    no_value = run("estimate", ckpt, "--data", data, *spec)
    assert "--decoder-variance" in one_line_error(no_value)

    est = run_json("estimate", ckpt, "--data", data, *spec, "--decoder-variance", "0.3", "--samples", "64")
    assert est["decoder_variance"] == "fixed" and est["entropy_elbo"] is None
    assert "never learned" in est["note"]
    mine, se = independent_mc_elbo(vae.encode, vae.decode, torch.tensor(0.3), x, 64)
    assert_within_4_se(est, mine, se)
    shown = run("estimate", ckpt, "--data", data, *spec, "--decoder-variance", "0.3", "--samples", "4")
    assert shown.exit_code == 0 and "never learned" in shown.stderr


class PyTorchVAELayout(nn.Module):
    """PyTorch-VAE's VanillaVAE as its repository lays it out (final layer with batch norm, 3 output channels), at
    8x8 images with two conv blocks; written here, independently of entropy_elbo.checkpoints.vanilla."""

    def __init__(self, latent_dim: int = 3, hidden: tuple[int, int] = (4, 8)) -> None:
        super().__init__()
        a, b = hidden
        self.encoder = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, a, kernel_size=3, stride=2, padding=1), nn.BatchNorm2d(a), nn.LeakyReLU()),
            nn.Sequential(nn.Conv2d(a, b, kernel_size=3, stride=2, padding=1), nn.BatchNorm2d(b), nn.LeakyReLU()))
        self.fc_mu, self.fc_var = nn.Linear(b * 4, latent_dim), nn.Linear(b * 4, latent_dim)
        self.decoder_input = nn.Linear(latent_dim, b * 4)
        self.decoder = nn.Sequential(nn.Sequential(
            nn.ConvTranspose2d(b, a, kernel_size=3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(a),
            nn.LeakyReLU()))
        self.final_layer = nn.Sequential(
            nn.ConvTranspose2d(a, a, kernel_size=3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(a),
            nn.LeakyReLU(), nn.Conv2d(a, 3, kernel_size=3, padding=1), nn.Tanh())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x).flatten(1)
        return self.fc_mu(h), self.fc_var(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.decoder(self.decoder_input(z).view(-1, 8, 2, 2)))


def test_pytorch_vae_vanilla_layout_is_read_from_shapes_without_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vae = PyTorchVAELayout().eval()
    with torch.no_grad():
        vae.fc_var.bias[:] = torch.tensor([-3.0, 0.0, 0.0])  # latent 0 informative, 1 and 2 near the prior
        vae.fc_mu.weight[0] *= 20
        for m in vae.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in vae.state_dict().items()}, "epoch": 9, "global_step": 90,
                "pytorch-lightning_version": "1.9.0"}, ckpt)
    x = torch.rand(N_ROWS, 3, 8, 8) * 2 - 1
    images = save_data(tmp_path, x)
    flat = tmp_path / "flat.npy"
    np.save(flat, x.reshape(N_ROWS, -1).numpy())

    info = run_json("inspect", ckpt)
    assert (info["fmt"], info["h"], info["d"]) == ("lightning", 3, 192)
    assert "VanillaVAE" in info["model_kind"]
    assert "'fc_var'" in info["encoder"]["evidence"] and info["decoder"]["kind"] == "fixed"

    with torch.no_grad():
        nu, log_var = vae.encode(x)
    entropy = Normal(torch.zeros_like(log_var), (0.5 * log_var.double()).exp()).entropy().mean(0)
    for data in (images, flat):
        got = run_json("collapse", ckpt, "--data", data)
        np.testing.assert_allclose(got["mean_entropy"], entropy.numpy(), rtol=1e-5)
        np.testing.assert_allclose(got["encoder_mean_variance"], nu.double().var(0, unbiased=False).numpy(), rtol=1e-4)
    assert got["active"]["entropy"] == int((entropy <= 1.0).sum()) == 1

    est = run_json("estimate", ckpt, "--data", flat, "--decoder-variance", "0.3", "--samples", "64")
    mine, se = independent_mc_elbo(vae.encode, vae.decode, torch.tensor(0.3), x, 64)
    assert_within_4_se(est, mine, se)


def test_a_conv_layout_that_is_not_vanillavae_asks_for_model(tmp_path: Path) -> None:
    (tmp_path / "vanilla.py").write_text(VANILLA)  # its final layer lacks the batch norm: not the layout
    vae = import_file(tmp_path / "vanilla.py", "vanilla_for_test3").VanillaVAE(1, 3)
    ckpt = tmp_path / "m.pt"
    torch.save(vae.state_dict(), ckpt)
    x = save_data(tmp_path, torch.rand(10, 1, 8, 8))
    line = one_line_error(run("collapse", ckpt, "--data", x))
    assert "m.pt" in line and "--model FILE.py:NAME" in line


def test_user_class_mismatch_and_import_error_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "vanilla.py").write_text(VANILLA)
    torch.manual_seed(0)
    vae = import_file(tmp_path / "vanilla.py", "vanilla_for_test2").VanillaVAE(1, 3)
    ckpt = tmp_path / "m.pt"
    torch.save(vae.state_dict(), ckpt)
    x = save_data(tmp_path, torch.rand(10, 1, 8, 8))
    wrong = run("estimate", ckpt, "--data", x, "--model", f"{tmp_path / 'vanilla.py'}:VanillaVAE",
                "--model-kwargs", '{"in_channels": 1, "latent_dim": 5}')
    line = one_line_error(wrong)
    assert "fc_mu.weight (3, 32) vs (5, 32)" in line
    (tmp_path / "broken.py").write_text("import torch\nraise RuntimeError('boom at import')\n")
    broken = one_line_error(run("estimate", ckpt, "--data", x, "--model", f"{tmp_path / 'broken.py'}:VAE"))
    assert "broken.py" in broken and "boom at import" in broken


# pythae folders are read with pythae's own classes: tests/test_peers_pythae.py


# ---------------------------------------------------------------------------------------------- TorchScript


class ScriptableVAE(nn.Module):
    """encode/decode exported to TorchScript; decoder std stored as `log_scale` (log-std, per-dim)."""

    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.body = nn.Linear(d, 8)
        self.fc_mu, self.fc_var = nn.Linear(8, h), nn.Linear(8, h)
        self.dec = nn.Sequential(nn.Linear(h, 8), nn.Tanh(), nn.Linear(8, d))
        self.log_scale = nn.Parameter(0.2 * torch.randn(d) - 0.4)

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.relu(self.body(x))
        return self.fc_mu(t), self.fc_var(t)

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0])


def test_torchscript_entropy_and_mc_elbo(tmp_path: Path) -> None:
    torch.manual_seed(2)
    d, h = 5, 3
    vae = ScriptableVAE(d, h).eval()
    path = tmp_path / "scripted.pt"
    torch.jit.script(vae).save(str(path))
    x = torch.randn(N_ROWS, d)
    data = save_data(tmp_path, x)
    info = run_json("inspect", path, "--trust-code")
    assert info["fmt"] == "torchscript" and info["decoder"]["name"] == "log_scale"
    assert info["decoder"]["param"] == "logstd" and info["decoder"]["kind"] == "per-dim"
    sigma2 = (2 * vae.log_scale.detach()).exp()
    assert info["decoder"]["value"] == pytest.approx(sigma2.double().tolist(), rel=1e-6)

    est = run_json("estimate", path, "--data", data, "--samples", "64", "--trust-code")
    with torch.no_grad():
        log_tau2 = vae.encode(x)[1]
    assert est["entropy_elbo"] == pytest.approx(independent_entropy_elbo(log_tau2, sigma2, d), rel=1e-6)
    mine, se = independent_mc_elbo(vae.encode, vae.decode, sigma2, x, 64)
    assert_within_4_se(est, mine, se)


# ---------------------------------------------------------------------------------------------- plain MLP state_dicts


class PlainMLP(nn.Module):
    """An MLP VAE with tanh, heads fc_mu / fc_var, decoder std per-dim through softplus (`noise_std`)."""

    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d, 12), nn.Tanh(), nn.Linear(12, 10), nn.Tanh())
        self.fc_mu, self.fc_var = nn.Linear(10, h), nn.Linear(10, h)
        self.decoder = nn.Sequential(nn.Linear(h, 10), nn.Tanh(), nn.Linear(10, 12), nn.Tanh(), nn.Linear(12, d))
        self.noise_std = nn.Parameter(0.3 * torch.randn(d))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.encoder(x)
        return self.fc_mu(t), self.fc_var(t)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "pth-dict"])
def test_plain_mlp_from_shapes(tmp_path: Path, fmt: str) -> None:
    torch.manual_seed(3)
    d, h = 7, 2
    vae = PlainMLP(d, h).eval()
    state = vae.state_dict()
    path = tmp_path / {"pt": "mlp.pt", "safetensors": "mlp.safetensors", "pth-dict": "mlp.pth"}[fmt]
    if fmt == "pt":
        torch.save(state, path)
    elif fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"framework": "pt"})
    else:
        torch.save({"model": state, "step": 7}, path)
    x = torch.randn(N_ROWS, d)
    data = save_data(tmp_path, x)
    sigma2 = torch.nn.functional.softplus(vae.noise_std.detach()) ** 2
    with torch.no_grad():
        log_tau2 = vae.encode(x)[1]
    est = run_json("estimate", path, "--data", data, "--activation", "tanh", "--output-activation", "linear",
                   "--no-head-activation", "--samples", "64")
    assert est["extra"]["checkpoint"]["decoder"]["param"] == "softplus_std"
    assert est["entropy_elbo"] == pytest.approx(independent_entropy_elbo(log_tau2, sigma2, d), rel=1e-6)
    mine, se = independent_mc_elbo(vae.encode, vae.decode, sigma2, x, 64)
    assert_within_4_se(est, mine, se)
    if fmt == "pt":  # the wrong activation gives a different encoder, so a different entropy ELBO
        relu = run_json("estimate", path, "--data", data, "--activation", "relu", "--output-activation", "linear",
                        "--no-head-activation", "--samples", "0")
        assert abs(relu["entropy_elbo"] - est["entropy_elbo"]) > 1e-3


def test_split_encoder_output_and_unrecognised_names_with_overrides(tmp_path: Path) -> None:
    torch.manual_seed(4)
    d, h = 6, 2
    enc = nn.Sequential(nn.Linear(d, 10), nn.ReLU(), nn.Linear(10, 2 * h))  # second half: log-variance
    dec = nn.Sequential(nn.Linear(h, 10), nn.ReLU(), nn.Linear(10, d))
    raw = torch.randn(())  # a decoder variance under a name nobody uses, stored through softplus
    state = {**{f"encoder.{k}": v for k, v in enc.state_dict().items()},
             **{f"decoder.{k}": v for k, v in dec.state_dict().items()}, "obs_noise_raw": raw}
    path = tmp_path / "split.pt"
    torch.save(state, path)
    x = torch.randn(N_ROWS, d)
    data = save_data(tmp_path, x)
    info = run_json("inspect", path)
    assert info["decoder"]["kind"] == "fixed" and info["encoder"]["kind"] == "output"
    assert "2 x 2 outputs" in info["encoder"]["evidence"]
    reading = ["--activation", "relu", "--output-activation", "linear"]  # untrained: the data cannot tell
    est = run_json("estimate", path, "--data", data, "--samples", "0", "--decoder-var", "obs_noise_raw",
                   "--decoder-var-param", "softplus_var", "--encoder-var-param", "logvar", *reading)
    with torch.no_grad():
        log_tau2 = enc(x)[:, h:]
    sigma2 = torch.nn.functional.softplus(raw)
    assert est["entropy_elbo"] == pytest.approx(independent_entropy_elbo(log_tau2, sigma2, d), rel=1e-6)
    logstd = run_json("estimate", path, "--data", data, "--samples", "0", "--decoder-var", "obs_noise_raw",
                      "--decoder-var-param", "softplus_var", "--encoder-var-param", "logstd", *reading)
    assert logstd["entropy_elbo"] == pytest.approx(
        independent_entropy_elbo(2 * log_tau2, sigma2, d), rel=1e-6)


def test_ambiguity_lists_candidates_and_override_picks(tmp_path: Path) -> None:
    torch.manual_seed(5)
    d, h = 4, 2
    vae = PlainMLP(d, h)
    state = {k: v for k, v in vae.state_dict().items() if k != "noise_std"}
    state["log_sigma2"], state["log_scale"] = torch.tensor(-1.0), torch.tensor(0.25)
    path = tmp_path / "two.pt"
    torch.save(state, path)
    line = one_line_error(run("inspect", path))
    assert "log_sigma2" in line and "log_scale" in line and "--decoder-var" in line
    info = run_json("inspect", path, "--decoder-var", "log_scale", "--decoder-var-param", "logstd")
    assert info["decoder"]["value"] == pytest.approx(math.exp(0.5), rel=1e-6)


def test_variance_network_from_shapes_mc_elbo(tmp_path: Path) -> None:
    torch.manual_seed(9)
    d, h = 5, 2
    vae = PlainMLP(d, h).eval()
    var_net = nn.Sequential(nn.Linear(h, 8), nn.Tanh(), nn.Linear(8, d))  # VAE-3: log sigma^2(z)
    state = {k: v for k, v in vae.state_dict().items() if k != "noise_std"}
    state.update({f"dec_logvar.{k}": v for k, v in var_net.state_dict().items()})
    path = tmp_path / "vae3.pt"
    torch.save(state, path)
    x = torch.randn(N_ROWS, d)
    data = save_data(tmp_path, x)
    est = run_json("estimate", path, "--data", data, "--activation", "tanh", "--output-activation", "linear",
                   "--no-head-activation", "--samples", "64")
    assert est["decoder_variance"] == "network"

    def decode(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return vae.decode(z), var_net(z).exp()

    mine, se = independent_mc_elbo(vae.encode, decode, torch.tensor(1.0), x, 64)
    assert_within_4_se(est, mine, se)


# ---------------------------------------------------------------------------------------------- the user's class


USER_LINEAR = '''
import torch
from torch import nn


class LinearVAE(nn.Module):
    """A linear VAE whose tau is shared by all points, stored as `q_z_std` (softplus std); sigma as log-std."""

    def __init__(self, d, h):
        super().__init__()
        self.enc, self.dec = nn.Linear(d, h), nn.Linear(h, d)
        self.q_z_std = nn.Parameter(torch.zeros(h))
        self.log_scale = nn.Parameter(torch.tensor(0.0))

    def encode(self, x):
        mu = self.enc(x)
        return mu, nn.functional.softplus(self.q_z_std).expand_as(mu)

    def decode(self, z):
        return self.dec(z)


def build_vae(d, h):
    return LinearVAE(d, h)
'''


def linear_vae_elbo(w: torch.Tensor, b: torch.Tensor, v: torch.Tensor, c: torch.Tensor, tau2: torch.Tensor,
                    sigma2: float, x: torch.Tensor) -> float:
    """Exact ELBO of a linear VAE: E_q ||x - Wz - b||^2 = ||x - W nu - b||^2 + sum_h tau_h^2 ||W_h||^2."""
    w, b, v, c, tau2, x = (t.double() for t in (w, b, v, c, tau2, x))
    nu = x @ v.T + c
    sq = (x - nu @ w.T - b).pow(2).sum(-1) + (tau2 * w.pow(2).sum(0)).sum()
    d = x.shape[1]
    ll = -0.5 * d * math.log(2 * math.pi * sigma2) - 0.5 * sq / sigma2
    kl = 0.5 * (nu.pow(2) + tau2 - tau2.log() - 1).sum(-1)
    return float((ll - kl).mean())


@pytest.mark.parametrize("spec_kind", ["file", "module"])
def test_user_class_linear_vae_against_closed_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   spec_kind: str) -> None:
    name = f"userlin_{spec_kind}"
    (tmp_path / f"{name}.py").write_text(USER_LINEAR)
    torch.manual_seed(6)
    d, h = 6, 2
    vae = import_file(tmp_path / f"{name}.py", f"{name}_ref").LinearVAE(d, h)
    with torch.no_grad():
        vae.q_z_std.copy_(torch.tensor([-0.5, 0.8]))
        vae.log_scale.fill_(-0.35)
    path = tmp_path / "linear.pt"
    torch.save({"model_state_dict": vae.state_dict(), "epoch": 12}, path)
    x = torch.randn(N_ROWS, d)
    data = save_data(tmp_path, x)
    if spec_kind == "module":
        monkeypatch.syspath_prepend(str(tmp_path))
        spec = f"{name}:build_vae"
    else:
        spec = f"{tmp_path / (name + '.py')}:LinearVAE"
    args = ["--model", spec, "--model-kwargs", json.dumps({"d": d, "h": h})]
    est = run_json("estimate", path, "--data", data, "--samples", "200", *args)
    found = est["extra"]["checkpoint"]
    assert found["encoder"]["kind"] == "constant" and found["encoder"]["param"] == "softplus_std"
    assert found["decoder"]["name"] == "log_scale" and found["decoder"]["param"] == "logstd"
    tau2 = torch.nn.functional.softplus(vae.q_z_std.detach()) ** 2
    sigma2 = math.exp(2 * -0.35)
    assert est["entropy_elbo"] == pytest.approx(
        independent_entropy_elbo(tau2.log().expand(N_ROWS, h), torch.tensor(sigma2), d), rel=1e-6)
    exact = linear_vae_elbo(vae.dec.weight.detach(), vae.dec.bias.detach(), vae.enc.weight.detach(),
                            vae.enc.bias.detach(), tau2, sigma2, x)
    assert abs(est["mc_elbo"] - exact) <= 4 * est["mc_sampling_stderr"], (est["mc_elbo"], exact)


# ---------------------------------------------------------------------------------------------- pickles


class WritesAFile:
    """Unpickling this object calls open(target, 'w'): a file appears if the pickle is ever run."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (open, (self.target, "w"))


def test_pickle_that_would_write_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"fc_mu.weight": torch.zeros(2, 3)}, "payload": WritesAFile(str(target))}, path)
    x = save_data(tmp_path, torch.zeros(4, 3))
    for args in (["inspect", path], ["estimate", path, "--data", x]):
        line = one_line_error(run(*args))
        assert "--trust-code" in line and "refused" in line
        assert not target.exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x02garbage that is no pickle")
    damaged = one_line_error(run("inspect", junk))
    assert "not a checkpoint" in damaged and "refused" not in damaged


class TrustedVAE(PlainMLP):
    """A whole module pickled with torch.save(model): readable only under --trust-code."""


def test_whole_pickled_module_only_when_trusted(tmp_path: Path) -> None:
    torch.manual_seed(7)
    d, h = 5, 2
    vae = TrustedVAE(d, h).eval()
    path = tmp_path / "whole.pt"
    torch.save(vae, path)
    x = torch.randn(N_ROWS, d)
    data = save_data(tmp_path, x)
    assert "--trust-code" in one_line_error(run("inspect", path))
    est = run_json("estimate", path, "--data", data, "--samples", "0", "--trust-code")
    assert est["extra"]["checkpoint"]["model_kind"] == "pickled module (trusted)"
    sigma2 = torch.nn.functional.softplus(vae.noise_std.detach()) ** 2
    with torch.no_grad():
        log_tau2 = vae.encode(x)[1]
    assert est["entropy_elbo"] == pytest.approx(independent_entropy_elbo(log_tau2, sigma2, d), rel=1e-6)


# ---------------------------------------------------------------------------------------------- our own files


def test_native_files_load_unchanged_and_inspect(tmp_path: Path) -> None:
    torch.manual_seed(8)
    model = build_model(ModelConfig(kind="vae1", data_dim=4, latent_dim=2, hidden=(6,), init_log_sigma2=-0.7))
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_model(path, device="cpu")
    assert loaded.model.config == model.config
    assert load_model(path, options=LoadOptions()).model.config == model.config
    info = run_json("inspect", path)
    assert (info["model_kind"], info["h"], info["d"]) == ("vae1", 2, 4)
    assert info["decoder"]["value"] == pytest.approx(math.exp(-0.7), rel=1e-6)
    assert sys.modules.get("entropy_elbo.cli") is not None


FORWARD_ONLY = '''
import torch
from torch import nn


class Decoder(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(h, 8), nn.ReLU(), nn.Linear(8, d))
        self.logvar = nn.Parameter(torch.linspace(-1.0, 0.5, d))

    def forward(self, z):
        return self.net(z), self.logvar.expand(z.shape[0], -1)


class ForwardOnly(nn.Module):
    """No encode(): forward returns (reconstruction, mu, log_var); the decoder returns (mean, log-variance)."""

    def __init__(self, d, h):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, 2 * h))
        self.decoder = Decoder(d, h)
        self.h = h

    def forward(self, x):
        t = self.body(x)
        mu, log_var = t[:, : self.h], t[:, self.h :]
        return self.decoder(mu)[0], mu, log_var
'''


def test_forward_returning_several_tensors(tmp_path: Path) -> None:
    (tmp_path / "fwd.py").write_text(FORWARD_ONLY)
    torch.manual_seed(10)
    d, h = 6, 3
    vae = import_file(tmp_path / "fwd.py", "fwd_ref").ForwardOnly(d, h).eval()
    path = tmp_path / "fwd.pt"
    torch.save(vae.state_dict(), path)
    x = torch.randn(N_ROWS, d)
    data = save_data(tmp_path, x)
    args = ["--model", f"{tmp_path / 'fwd.py'}:ForwardOnly", "--model-kwargs", json.dumps({"d": d, "h": h})]
    est = run_json("estimate", path, "--data", data, "--samples", "64", *args)
    found = est["extra"]["checkpoint"]
    assert found["encoder"]["name"] == "forward()[2]" and found["decoder"]["kind"] == "per-dim"
    sigma2 = vae.decoder.logvar.detach().exp()

    def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return vae(x)[1:]

    with torch.no_grad():
        log_tau2 = encode(x)[1]
    assert est["entropy_elbo"] == pytest.approx(independent_entropy_elbo(log_tau2, sigma2, d), rel=1e-6)
    mine, se = independent_mc_elbo(encode, lambda z: vae.decoder(z)[0], sigma2, x, 64)
    assert_within_4_se(est, mine, se)


class Output(dict):
    """pythae's ModelOutput: a dict whose keys are also attributes."""

    __getattr__ = dict.__getitem__


class ObjEncoder(nn.Module):
    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.hidden, self.mean, self.lv = nn.Linear(d, 8), nn.Linear(8, h), nn.Linear(8, h)

    def forward(self, x: torch.Tensor) -> Output:
        t = torch.tanh(self.hidden(x))
        return Output(embedding=self.mean(t), log_covariance=self.lv(t))


class ObjDecoder(nn.Module):
    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(h, 8), nn.Tanh(), nn.Linear(8, d))

    def forward(self, z: torch.Tensor) -> Output:
        return Output(reconstruction=self.net(z))


def test_pythae_custom_networks_only_under_trust(tmp_path: Path) -> None:
    import pickle

    torch.manual_seed(11)
    d, h = 4, 2
    enc, dec = ObjEncoder(d, h).eval(), ObjDecoder(d, h).eval()
    folder = tmp_path / "final_model"
    folder.mkdir()
    (folder / "model_config.json").write_text(json.dumps(
        {"name": "VAEConfig", "input_dim": [d], "latent_dim": h, "reconstruction_loss": "mse"}))
    state = {**{f"encoder.{k}": v for k, v in enc.state_dict().items()},
             **{f"decoder.{k}": v for k, v in dec.state_dict().items()}}
    torch.save({"model_state_dict": state}, folder / "model.pt")
    for name, net in (("encoder.pkl", ObjEncoder(d, h)), ("decoder.pkl", ObjDecoder(d, h))):
        with open(folder / name, "wb") as fh:
            pickle.dump(net, fh)  # other weights than model.pt's: the loader must load model.pt into them
    x = torch.randn(N_ROWS, d)
    data = save_data(tmp_path, x)
    assert "--trust-code" in one_line_error(run("estimate", folder, "--data", data, "--decoder-variance", "0.2"))
    est = run_json("estimate", folder, "--data", data, "--decoder-variance", "0.2", "--samples", "64",
                   "--trust-code")
    assert est["extra"]["checkpoint"]["encoder"]["name"] == "log_covariance"

    def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = enc(x)
        return out.embedding, out.log_covariance

    mine, se = independent_mc_elbo(encode, lambda z: dec(z).reconstruction, torch.tensor(0.2), x, 64)
    assert_within_4_se(est, mine, se)
