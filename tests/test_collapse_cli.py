"""`entropy-elbo collapse`: the real command on checkpoints whose encoder variances are known."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import norm

from entropy_elbo.checkpoints import save_checkpoint
from entropy_elbo.cli import main
from entropy_elbo.models import ModelConfig, build_model

# The same four latents as tests/test_collapse.py, as a linear VAE with a fixed decoder variance:
# nu = V x with V = diag(spread), tau fixed. Entropy collapses z0, z2; active units z0, z3; Lucas z0.
TAU = np.array([1.0, 0.05, 0.95, 0.04])
SPREAD = np.array([0.0, 1.0, 0.5, 0.0])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("collapse")
    model = build_model(ModelConfig(kind="linear", data_dim=4, latent_dim=4, decoder_variance="fixed"))
    with torch.no_grad():
        model.V.copy_(torch.diag(torch.tensor(SPREAD, dtype=torch.float32)))
        model.log_tau2.copy_(torch.tensor(2 * np.log(TAU), dtype=torch.float32))
    ckpt = folder / "known.safetensors"
    save_checkpoint(model, ckpt)
    x = np.random.default_rng(0).standard_normal((3000, 4)).astype(np.float32)
    np.save(folder / "x.npy", x)
    return folder, str(ckpt), str(folder / "x.npy"), x


def run(*args):
    return CliRunner().invoke(main, ["collapse", *args, "--device", "cpu"])


def test_json_gives_the_built_verdicts_and_the_whole_array_statistics(files):
    _, ckpt, data, x = files
    res = run(ckpt, "--data", data, "--json", "--batch-size", "700")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["collapsed"] == {"entropy": [True, False, True, False], "active_units": [True, False, False, True],
                              "lucas": [True, False, False, False]}
    assert d["counts"] == {"entropy": 2, "active_units": 2, "lucas": 1}
    assert d["disagreements"] == [2, 3] and d["n"] == 3000
    assert d["settings"] == {"threshold": 1.0, "delta": None, "active_threshold": 0.01, "lucas_epsilon": 0.01,
                             "lucas_delta": 0.01}
    np.testing.assert_allclose(d["mean_entropy"], norm(scale=TAU).entropy(), rtol=1e-6)
    assert "mean_variance" not in d  # renamed: it holds Var_n[nu], not a mean of variances
    np.testing.assert_allclose(d["encoder_mean_variance"], (x.astype(np.float64) * SPREAD).var(0), rtol=1e-6,
                               atol=1e-12)
    assert [row["latent"] for row in d["latents"]] == [0, 2, 1, 3]


def test_flags_change_the_verdicts(files):
    _, ckpt, data, _ = files
    # delta 0.04 puts the threshold at 1.379: z2 (1.368) is no longer collapsed by the entropy criterion
    d = json.loads(run(ckpt, "--data", data, "--json", "--delta", "0.04").stdout)
    assert d["collapsed"]["entropy"] == [True, False, False, False]
    assert d["settings"]["threshold"] is None and d["settings"]["delta"] == 0.04
    # active units above 0.3: z2's variance 0.25 now counts as collapsed
    d = json.loads(run(ckpt, "--data", data, "--json", "--active-threshold", "0.3").stdout)
    assert d["collapsed"]["active_units"] == [True, False, True, True]
    # a Lucas epsilon of 3 nats: z3's KL is 2.72 everywhere and z2's 0.5 nu^2 + 0.003 < 3 almost everywhere,
    # but z1's KL 2.50 + 0.5 nu^2 (nu ~ N(0, 1)) is below 3 only for |nu| < 1, 68% of the points
    d = json.loads(run(ckpt, "--data", data, "--json", "--lucas-epsilon", "3").stdout)
    assert d["collapsed"]["lucas"] == [True, False, True, True]


def test_text_output_names_counts_disagreements_bars_and_defaults(files):
    _, ckpt, data, _ = files
    res = run(ckpt, "--data", data)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "entropy criterion (eq. 24): 2 of 4 latents collapsed, 2 active" in out
    assert "active units (Burda et al. 2016): 2 of 4 latents collapsed, 2 active" in out
    assert "(epsilon, delta)-collapse (Lucas et al. 2019): 1 of 4 latents collapsed, 3 active" in out
    assert "the metrics disagree on 2 latents: z2, z3" in out
    bars = [line for line in out.splitlines() if line.startswith("z") and "|" in line]
    assert [b.split()[0] for b in bars] == ["z0", "z2", "z1", "z3"]
    assert "mean entropy > 1 nat (paper: 1.0 nat)" in res.stderr and "Var_x[nu_h] <= 0.01" in res.stderr


def test_help_states_the_defaults():
    res = CliRunner().invoke(main, ["collapse", "--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    for fragment in ("default: 1.0, the paper's", "--active-threshold FLOAT", "[default: 0.01]", "--lucas-delta",
                     "--plot", "--delta"):
        assert fragment in text


def test_plot_writes_a_png_with_red_collapsed_bars(files):
    folder, ckpt, data, _ = files
    png = folder / "latents.png"
    res = run(ckpt, "--data", data, "--plot", str(png))
    assert res.exit_code == 0, res.output
    from matplotlib.image import imread

    img = (imread(png)[..., :3] * 255).round()  # (rows, cols, 3)
    red = np.all(np.abs(img - [214, 39, 40]) < 3, axis=-1).sum()  # tab:red, the collapsed bars
    blue = np.all(np.abs(img - [31, 119, 180]) < 3, axis=-1).sum()  # tab:blue, the active ones
    assert red > 100 and blue > 100


@pytest.mark.parametrize("args, message", [
    (["--threshold", "1.0", "--delta", "0.4"], "give one of them, not both"),
    (["--lucas-delta", "1.5"], "--lucas-delta"),
])
def test_bad_flags_exit_1_with_one_line(files, args, message):
    _, ckpt, data, _ = files
    res = run(ckpt, "--data", data, *args)
    assert res.exit_code == 1
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_wrong_data_width_and_missing_checkpoint_exit_1(files, tmp_path):
    folder, ckpt, _, _ = files
    np.save(tmp_path / "wide.npy", np.zeros((5, 7), dtype=np.float32))
    res = run(ckpt, "--data", str(tmp_path / "wide.npy"))
    assert res.exit_code == 1 and "model expects 4" in res.stderr
    res = run(str(folder / "nope.safetensors"), "--data", str(tmp_path / "wide.npy"))
    assert res.exit_code == 1 and "no such file" in res.stderr
    res = run(ckpt, "--data", str(tmp_path / "wide.npy"), "--plot", str(tmp_path / "no" / "dir.png"))
    assert res.exit_code == 1


def test_manifold_vae1_entropy_criterion_counts_near_the_intrinsic_dimension(tmp_path):
    """Reduced Fig. 7(a): D=100 manifold data of intrinsic dimension 10, H=20, VAE-1 128/40 LeakyReLU.

    Scaled down from the paper (25,000 points, batch 512, lr 1e-3, init ln sigma^2 = -9) to 2,000 points,
    batch 100, lr 4e-3 and init ln sigma^2 = -7 so that collapse sets in within 120 epochs on a CPU.
    """
    from entropy_elbo.data import make_synthetic
    from entropy_elbo.train import TrainConfig, train

    x = make_synthetic("manifold", n=2000, seed=0)
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=100, latent_dim=20, hidden=(128, 40),
                                    activation="leaky_relu", init_log_sigma2=-7.0))
    # variance_lr_factor=1: calibrated on one lr for all parameters; this reduced run stops far from stationarity
    # (r ~ 3), where a faster sigma^2 changes how many latents have collapsed so far
    train(model, x, TrainConfig(epochs=120, batch_size=100, lr=4e-3, samples=1, seed=0, variance_lr_factor=1.0))
    save_checkpoint(model, tmp_path / "manifold.safetensors")
    np.save(tmp_path / "x.npy", x)
    res = run(str(tmp_path / "manifold.safetensors"), "--data", str(tmp_path / "x.npy"), "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    active = d["active"]["entropy"]
    assert 6 <= active <= 14  # intrinsic dimension 10 (the paper finds 8 of 20 for its k = 9)
    with torch.no_grad():
        _, log_tau2 = model.encode(torch.as_tensor(x))
    entropy = norm(scale=np.exp(0.5 * log_tau2.double().numpy())).entropy().mean(0)  # (H,)
    assert active == int((entropy <= 1.0).sum())
