"""examples/side_by_side.py: its arguments, its one-line refusal of a folder without verification/VAE.py, and one
short run against a stand-in "authors' repository" written here.

The stand-in is NOT the authors' code: it only has their interface (module-level `set_default_tensor_type` to CUDA,
`LinearVAE(latent_dim, output_dim, num_samples)` and `VAE1(latent_dim, output_dim, enc, dec, num_samples)` whose
forward returns (lower bound, three entropies), `train_vae(vae, num_iters, train_loader, test_loader, lr,
compute_ll)` calling `.cuda()`, `generate_PCA_data(...)` returning loaders), so the script's plumbing is tested
without their repository. The real comparison is in docs/reproduction.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from script_helpers import load_script

STAND_IN = '''
import numpy as np
import torch
import torchvision  # noqa: F401  (theirs imports it; the script stands in for it when it is missing)
from torch.nn import Linear, Module, Parameter, Sequential, ReLU
from torch.nn.functional import softplus
from torch.utils.data import DataLoader, TensorDataset

torch.set_default_tensor_type("torch.cuda.FloatTensor")


class LinearVAE(Module):
    def __init__(self, latent_dim, output_dim, num_samples=100):
        super().__init__()
        self.latent_dim, self.num_samples = latent_dim, num_samples
        self.encoder, self.decoder = Linear(output_dim, latent_dim), Linear(latent_dim, output_dim)
        self.noise_std = Parameter(torch.Tensor([0.0]))
        self.q_z_std = Parameter(torch.Tensor(np.zeros(latent_dim)))

    def forward(self, x):
        nu, tau, sigma = self.encoder(x), softplus(self.q_z_std), softplus(self.noise_std)
        z = nu + tau * torch.randn(self.num_samples, *nu.shape)
        ll = torch.distributions.Normal(self.decoder(z), sigma).log_prob(x).mean(0).sum()
        kl = 0.5 * (nu ** 2 + tau ** 2 - 1 - 2 * torch.log(tau)).sum()
        return ll - kl, torch.zeros(())


class VAE1(Module):
    def __init__(self, latent_dim, output_dim, encoder_hidden_units, decoder_hidden_units, num_samples=100):
        super().__init__()
        self.latent_dim, self.num_samples = latent_dim, num_samples
        self.encoder = Sequential(Linear(output_dim, 50), ReLU(), Linear(50, 2 * latent_dim))
        self.decoder = Sequential(Linear(latent_dim, 50), ReLU(), Linear(50, output_dim))
        self.noise_std = Parameter(torch.Tensor([0.0]))

    def forward(self, x):
        out = self.encoder(x)
        nu, tau = out[:, :self.latent_dim], softplus(out[:, self.latent_dim:])
        z = nu + tau * torch.randn(self.num_samples, *nu.shape)
        ll = torch.distributions.Normal(self.decoder(z), softplus(self.noise_std)).log_prob(x).mean(0).sum()
        return ll - 0.5 * (nu ** 2 + tau ** 2 - 1 - 2 * torch.log(tau)).sum(), torch.zeros(())


def train_vae(vae, num_iters, train_loader, test_loader, lr=0.1, compute_ll=False):
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    for _ in range(num_iters):
        for data, _ in train_loader:
            data = data.cuda()
            opt.zero_grad()
            (-vae(data)[0]).backward()
            opt.step()
    return [], [], None, None


def generate_PCA_data(num_data_train, num_data_test, latent_dim, output_dim, batch_size, seed=None):
    np.random.seed(seed)
    w = np.random.uniform(size=(output_dim, latent_dim))
    x = np.random.normal(size=(num_data_train + num_data_test, latent_dim)) @ w.T + 0.1 * np.random.normal(
        size=(num_data_train + num_data_test, output_dim))
    make = lambda rows: DataLoader(TensorDataset(torch.Tensor(rows), torch.zeros(len(rows))), batch_size=batch_size,
                                   shuffle=True)
    return make(x[:num_data_train]), make(x[num_data_train:]), None
'''


@pytest.fixture(scope="module")
def side_by_side():  # noqa: ANN201
    return load_script("examples/side_by_side.py")


def stand_in_repo(root: Path) -> Path:
    (root / "verification").mkdir(parents=True)
    (root / "verification" / "VAE.py").write_text(STAND_IN)
    return root


def test_a_folder_without_verification_vae_is_refused_in_one_line(side_by_side, tmp_path: Path, capsys) -> None:
    assert side_by_side.main(["--authors", str(tmp_path), "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"--authors {tmp_path}: no verification/VAE.py there" in err and "ELBO-Entropies-AISTATS23" in err


def test_a_module_without_their_classes_is_refused_in_one_line(side_by_side, tmp_path: Path, capsys) -> None:
    (tmp_path / "verification").mkdir()
    (tmp_path / "verification" / "VAE.py").write_text("import torch\nclass LinearVAE: pass\n")
    assert side_by_side.main(["--authors", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no VAE1, train_vae, generate_PCA_data" in err


@pytest.mark.parametrize("argv", [["--model", "vae3"], ["--steps", "0"], ["--seeds"], []])
def test_bad_arguments_exit_with_usage(side_by_side, tmp_path: Path, argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as e:
        side_by_side.main(([] if argv == [] else ["--authors", str(tmp_path)]) + argv)
    assert e.value.code == 2 and "usage:" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["linear", "vae1"])
def test_a_short_run_prints_each_seed_and_the_medians(side_by_side, tmp_path: Path, model: str, capsys) -> None:
    repo = stand_in_repo(tmp_path / "clone")
    cuda_before, vision_before = torch.Tensor.cuda, sys.modules.get("torchvision")
    code = side_by_side.main(["--authors", str(repo), "--model", model, "--seeds", "3", "4", "--steps", "10",
                              "--samples", "2", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and torch.Tensor.cuda is cuda_before  # the device patches and the stand-in are undone
    assert torch.empty(1).device.type == "cpu" and sys.modules.get("torchvision") is vision_before
    rows = [line.split() for line in out.splitlines() if line.startswith(("authors ", "ours "))]
    assert [(r[0], r[1]) for r in rows if r[1] != "median"] == [("authors", "3"), ("ours", "3"), ("authors", "4"),
                                                                 ("ours", "4")]
    assert "10 steps (2 epochs)" in out and out.count("median [IQR] over 2 seeds") == 2
    mc = [float(r[2]) for r in rows if r[1] != "median"]
    assert all(np.isfinite(mc)) and all(m < 0 for m in mc)  # 10 steps from sigma^2 = softplus(0)^2: far below 0


def test_their_view_reads_softplus_std_as_their_forward_does(side_by_side, tmp_path: Path) -> None:
    module = side_by_side.load_authors(stand_in_repo(tmp_path / "clone"), torch.device("cpu"))
    vae = module.LinearVAE(2, 10, 4)
    with torch.no_grad():
        vae.q_z_std.copy_(torch.tensor([0.3, -1.0]))
        vae.noise_std.fill_(-2.0)
    view = side_by_side.AuthorsView(vae)
    x = torch.randn(5, 10)
    nu, log_tau2 = view.encode(x)
    tau = np.log1p(np.exp([0.3, -1.0]))
    assert torch.allclose(nu, vae.encoder(x))
    assert np.allclose(log_tau2.detach().numpy(), np.log(tau**2)[None].repeat(5, 0), atol=1e-6)
    assert np.isclose(float(view.decode(torch.zeros(1, 2))[1].detach()), np.log(np.log1p(np.exp(-2.0)) ** 2), atol=1e-6)
