"""pythae 0.1.2 folders written by pythae's own `model.save`: read with no flags, or refused in one line.

Every number is checked against the pythae model's own encoder/decoder outputs through torch.distributions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pythae.models as pm
import torch
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from test_checkpoints_wild import (
    assert_within_4_se,
    independent_mc_elbo,
    one_line_error,
    run,
    run_json,
    save_data,
)
from torch import nn
from torch.distributions import Normal

from entropy_elbo.checkpoints.pythae import PYTHAE_GAUSSIAN, PYTHAE_REFUSED

D, H, N = 6, 3, 300


def saved(tmp_path: Path, name: str, seed: int = 0, **config: object) -> tuple[nn.Module, Path]:
    """A pythae model with its default networks, weights perturbed off init, saved by pythae itself."""
    torch.manual_seed(seed)
    config_cls = getattr(pm, f"{name}Config", None) or getattr(pm, f"{name}_Config")
    model = getattr(pm, name)(config_cls(input_dim=(D,), latent_dim=H, **config)).eval()
    with torch.no_grad():
        if hasattr(model.encoder, "log_var"):
            model.encoder.log_var.bias.add_(torch.linspace(-2.0, 1.0, H))  # latents of unlike widths, one near collapse
    folder = tmp_path / name
    model.save(str(folder))
    return model, folder


def pythae_encode(model: nn.Module):  # noqa: ANN201
    def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model.encoder(x)
        return out.embedding, out.log_covariance
    return encode


@pytest.mark.parametrize("name", ["VAE", "BetaVAE", "IWAE", "FactorVAE", "MSSSIM_VAE", "DisentangledBetaVAE"])
def test_gaussian_pythae_models_read_with_no_flags(tmp_path: Path, name: str) -> None:
    model, folder = saved(tmp_path, name, **({"beta": 4.0} if name == "BetaVAE" else {}))
    x = torch.rand(N, D)
    data = save_data(tmp_path, x)
    info = run_json("inspect", folder)
    assert info["fmt"] == "pythae" and f"pythae {name} (pythae's own class" in info["model_kind"]
    assert (info["h"], info["d"]) == (H, D) and info["encoder"]["name"] == "log_covariance"
    implied = {"BetaVAE": 4.0, "MSSSIM_VAE": None, "DisentangledBetaVAE": None}.get(name, 1.0)
    assert info["decoder"]["kind"] == "fixed" and info["decoder"]["implied"] == implied
    prior = next(a for a in info["assumptions"] if a["what"] == "prior p(z) = N(0, I)")
    assert prior["evidence"].startswith("the pythae class's KL term is against N(0, I)")

    got = run_json("collapse", folder, "--data", data)
    with torch.no_grad():
        log_tau2 = pythae_encode(model)(x)[1].double()
    mine = Normal(0.0, (0.5 * log_tau2).exp()).entropy().mean(0)  # (H,) mean_n H[q(z_h|x_n)]
    rows = sorted(got["latents"], key=lambda r: r["latent"])
    assert [r["mean_encoder_entropy"] for r in rows] == pytest.approx(mine.tolist(), rel=1e-4)

    est = run_json("estimate", folder, "--data", data, "--decoder-variance", "0.3", "--samples", "64")
    want, se = independent_mc_elbo(pythae_encode(model), lambda z: model.decoder(z).reconstruction,
                                   torch.tensor(0.3), x, 64)
    assert_within_4_se(est, want, se)


def test_implied_variance_is_suggested(tmp_path: Path) -> None:
    _, folder = saved(tmp_path, "BetaVAE", beta=2.5)
    data = save_data(tmp_path, torch.rand(N, D))
    line = one_line_error(run("estimate", folder, "--data", data))
    assert "beta times the negative ELBO at sigma^2 = 2.5" in line
    assert "pass --decoder-variance 2.5 (what its loss implies)" in line


@pytest.mark.parametrize("name", ["VAMP", "VAE_IAF", "SVAE", "AE"])
def test_non_gaussian_pythae_models_refused(tmp_path: Path, name: str) -> None:
    _, folder = saved(tmp_path, name) if name != "AE" else _saved_ae(tmp_path)
    line = one_line_error(run("inspect", folder))
    assert line == (f"Error: {folder}: pythae {name} is not a Gaussian VAE with an N(0, I) prior: "
                    f"{PYTHAE_REFUSED[name]}; entropy-elbo cannot compute its ELBO and refuses rather than give a "
                    "wrong number")


def _saved_ae(tmp_path: Path) -> tuple[nn.Module, Path]:
    model = pm.AE(pm.AEConfig(input_dim=(D,), latent_dim=H))
    model.save(str(tmp_path / "AE"))
    return model, tmp_path / "AE"


def test_every_pythae_model_is_read_or_refused() -> None:
    shipped = {n for n in dir(pm) if (n + "Config" in dir(pm) or n + "_Config" in dir(pm)) and n != "BaseAE"}
    assert shipped == set(PYTHAE_GAUSSIAN) | set(PYTHAE_REFUSED)


def test_bce_refused(tmp_path: Path) -> None:
    _, folder = saved(tmp_path, "VAE", reconstruction_loss="bce")
    assert one_line_error(run("inspect", folder)) == (
        f"Error: {folder}: pythae VAE was trained with reconstruction_loss 'bce': a Bernoulli decoder, not a "
        "Gaussian one, so neither the entropy ELBO nor the Gaussian ELBO applies; refused")


class SmallEncoder(BaseEncoder):
    """A user's own pythae encoder: returns pythae's ModelOutput(embedding, log_covariance)."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.mu, self.lv = nn.Linear(D, 8), nn.Linear(8, H), nn.Linear(8, H)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        t = torch.tanh(self.body(x))
        return ModelOutput(embedding=self.mu(t), log_covariance=self.lv(t))


class SmallDecoder(BaseDecoder):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(H, 8), nn.Tanh(), nn.Linear(8, D))

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=self.net(z))


def build_custom(name: str = "VAE") -> nn.Module:
    """What a user passes as --model: pythae's class with their own networks (no weights: the loader sets them)."""
    cfg = getattr(pm, f"{name}Config")(input_dim=(D,), latent_dim=H)
    return getattr(pm, name)(cfg, encoder=SmallEncoder(), decoder=SmallDecoder())


def test_custom_networks_route_in_the_message_works(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = build_custom().eval()
    model.save(str(tmp_path / "custom"))
    folder = tmp_path / "custom"
    assert (folder / "encoder.pkl").is_file()
    data = save_data(tmp_path, x := torch.rand(N, D))
    line = one_line_error(run("inspect", folder))
    assert "pass --model FILE.py:NAME where NAME() returns pythae's VAE(VAEConfig(input_dim=..., latent_dim=...), " \
           "encoder=YourEncoder(...), decoder=YourDecoder(...)) from your own classes" in line
    assert "--trust-code" in line
    spec = f"{Path(__file__).resolve()}:build_custom"
    est = run_json("estimate", folder, "--data", data, "--model", spec, "--decoder-variance", "0.2", "--samples", "64")
    want, se = independent_mc_elbo(pythae_encode(model), lambda z: model.decoder(z).reconstruction,
                                   torch.tensor(0.2), x, 64)
    assert_within_4_se(est, want, se)


def test_vamp_refused_under_model_too(tmp_path: Path) -> None:
    _, folder = saved(tmp_path, "VAMP")
    (tmp_path / "m.py").write_text("import pythae.models as pm\n\n\ndef f():\n"
                                   "    return pm.VAE(pm.VAEConfig(input_dim=(6,), latent_dim=3))\n")
    line = one_line_error(run("inspect", folder, "--model", f"{tmp_path / 'm.py'}:f"))
    assert f"pythae VAMP is not a Gaussian VAE with an N(0, I) prior: {PYTHAE_REFUSED['VAMP']}" in line


class Evil:
    """Unpickling it would write a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "code ran"))


def test_loading_runs_no_pickle(tmp_path: Path) -> None:
    _, folder = saved(tmp_path, "VAE")
    state = torch.load(folder / "model.pt", weights_only=True)
    state["evil"] = Evil(tmp_path / "ran.txt")
    torch.save(state, folder / "model.pt")
    line = one_line_error(run("inspect", folder))
    assert "--trust-code" in line
    assert not (tmp_path / "ran.txt").exists()


def test_training_pipeline_output_dir(tmp_path: Path) -> None:
    """pythae's TrainingPipeline writes output_dir/<Model>_training_<date>/final_model: the output_dir is enough."""
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig

    torch.manual_seed(0)
    x = torch.rand(N, D)
    config = BaseTrainerConfig(output_dir=str(tmp_path / "runs"), num_epochs=2, per_device_train_batch_size=100,
                               no_cuda=True)
    model = pm.VAE(pm.VAEConfig(input_dim=(D,), latent_dim=H))
    TrainingPipeline(training_config=config, model=model)(train_data=x.numpy())
    got = run_json("collapse", tmp_path / "runs", "--data", save_data(tmp_path, x))
    trained = pm.AutoModel.load_from_folder(str(next((tmp_path / "runs").glob("VAE_training_*/final_model")))).eval()
    with torch.no_grad():
        log_tau2 = pythae_encode(trained)(x)[1].double()
    mine = Normal(0.0, (0.5 * log_tau2).exp()).entropy().mean(0)
    rows = sorted(got["latents"], key=lambda r: r["latent"])
    assert [r["mean_encoder_entropy"] for r in rows] == pytest.approx(mine.tolist(), rel=1e-4)
