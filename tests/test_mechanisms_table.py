"""Issue #22's closing table: every mechanism in the issue built here and read right or refused by name, with
the flags the tool's own message names; readings agree with torch.distributions (and Pyro's own Trace_ELBO) on
the model's own outputs: closed forms to 1e-6 relative, Monte Carlo within 4 sampling SE (a 6e-5 failure rate
per check). `pytest -s` prints one `TABLE |` row per mechanism: mechanism | what inspect says | flags | agreement.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import code_styles as cs
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_code_outputs import independent_elbo
from test_model_inputs import CVAE, ConvVAE, images, own_entropy
from test_nested_checkpoints import Net, SameNames
from torch import nn
from torch.distributions import Normal

import entropy_elbo
from entropy_elbo.cli import main
from entropy_elbo.errors import EntropyElboError

SAMPLES = 32


def row(mechanism: str, says: str, flags: str, agreement: str) -> None:
    print(f"TABLE | {mechanism} | {says[:150]} | {flags} | {agreement}")


def says(model: nn.Module, x: torch.Tensor, **flags: object) -> str:
    """The line inspect gives on how the encoder variance was read (its evidence)."""
    intro = entropy_elbo.open_checkpoint(model, x.numpy(), **flags).introspection
    return intro.encoder.evidence.split("; ")[-1]


def agreement(model: nn.Module, x: torch.Tensor, q: Normal, **flags: object) -> str:
    """Closed-form encoder entropy to 1e-6 relative and the MC ELBO within 4 SE of torch.distributions'."""
    est = entropy_elbo.estimate(model, x.numpy(), samples=SAMPLES, device="cpu", **flags)
    want = float(q.entropy().sum(-1).double().mean())
    rel = abs(est.entropies["encoder"] - want) / abs(want)
    assert rel <= 1e-6
    mine, se = independent_elbo(model, x, samples=SAMPLES, log_sigma2=lambda mu: model.logsigma2.expand_as(mu))
    z = abs(est.mc_elbo - mine) / math.hypot(se, est.mc_sampling_stderr)
    assert z <= 4
    return f"encoder entropy rel. err {rel:.1e}; MC ELBO {est.mc_elbo:.4f} vs {mine:.4f} ({z:.2f} SE)"


@pytest.mark.parametrize(("cls", "name"), [(cs.StdScale, "loc/scale (std)"), (cs.LogStd, "loc/log-std"),
                                           (cs.NormalOut, "Normal object"), (cs.IndependentOut, "Independent(Normal)")])
def test_encoder_output_styles(cls: type, name: str) -> None:
    model, (_, _, x) = cls(), cs.ppca()
    with torch.no_grad():
        q = cs.own_q(model, x)
    row(name, says(model, x), "none", agreement(model, x, q))


def test_heads_beside_the_encoder() -> None:
    model, (_, _, x) = cs.Siblings(), cs.ppca()
    with torch.no_grad():
        h = model.encoder(x)
        q = Normal(model.fc_mu(h), (0.5 * model.fc_var(h)).exp())
    row("heads beside the encoder", says(model, x), "none", agreement(model, x, q))


@pytest.mark.parametrize(("cls", "name"), [(cs.OddHeads, "heads found from forward (no encode(), unlisted names)"),
                                           (cs.DictOut, "forward() returning a dict (mu, log_std)")])
def test_heads_found_by_the_computation(cls: type, name: str) -> None:
    model, (_, _, x) = cls(), cs.ppca()
    note = [n for n in entropy_elbo.open_checkpoint(model, x.numpy()).introspection.notes if "heads found" in n]
    est = entropy_elbo.estimate(model, x.numpy(), samples=0, device="cpu")
    want = float(cs.forward_q(model, x).entropy().sum(-1).double().mean())
    rel = abs(est.entropies["encoder"] - want) / abs(want)
    assert note and rel <= 1e-6
    row(name, note[0], "none", f"encoder entropy rel. err {rel:.1e} (MC: test_code_outputs)")


def test_logits_with_the_sigmoid_in_the_loss_at_optimal() -> None:
    model, (x, _) = cs.Logits(), cs.logits_data()
    with pytest.raises(EntropyElboError, match="--output-activation sigmoid") as refused:
        entropy_elbo.estimate(model, x.numpy(), samples=8, device="cpu", decoder_variance="optimal")
    est = entropy_elbo.estimate(model, x.numpy(), samples=SAMPLES, device="cpu", decoder_variance="optimal",
                                output_activation="sigmoid")
    with torch.no_grad():
        q = cs.own_q(model, x)
        sq = torch.stack([(torch.sigmoid(model.decode(q.sample())) - x).pow(2) for _ in range(SAMPLES)]).mean()
    mine, se = independent_elbo(model, x, samples=SAMPLES, mean=lambda z: torch.sigmoid(model.decode(z)),
                                log_sigma2=lambda mu: sq.log().expand_as(mu))
    z = abs(est.mc_elbo - mine) / math.hypot(se, est.mc_sampling_stderr)
    assert z <= 4
    row("logits + sigmoid in the loss (optimal)", str(refused.value), "--output-activation sigmoid",
        f"MC ELBO {est.mc_elbo:.4f} vs {mine:.4f} ({z:.2f} SE)")


def test_laplace_and_conditional_are_refused_by_name() -> None:
    _, _, x = cs.ppca()
    with pytest.raises(EntropyElboError, match="returned a Laplace distribution, not a Gaussian") as laplace:
        entropy_elbo.estimate(cs.LaplaceDecoder(), x.numpy(), samples=8, device="cpu")
    row("Laplace decoder", str(laplace.value), "none (refused)", "collapse reads the encoder: see test_code_outputs")
    with pytest.raises(EntropyElboError, match=r"^conditional VAE: CVAE.encode\(x, c\)") as conditional:
        entropy_elbo.estimate(CVAE(), torch.randn(100, 6).numpy(), device="cpu")
    row("conditional VAE", str(conditional.value), "none (refused)", "-")


def test_flat_image_rows() -> None:
    model, x = ConvVAE(), images()
    flat = x.reshape(len(x), -1).numpy()
    note = entropy_elbo.open_checkpoint(model, flat).introspection.notes[0]
    a = entropy_elbo.estimate(model, flat, samples=SAMPLES, device="cpu")
    b = entropy_elbo.estimate(model, x.numpy(), samples=SAMPLES, device="cpu")
    rel = abs(a.entropies["encoder"] - own_entropy(model, x)) / abs(own_entropy(model, x))
    assert rel <= 1e-6 and a.mc_elbo == pytest.approx(b.mc_elbo, rel=1e-9)
    row("flat image rows, conv model", note, "none", f"encoder entropy rel. err {rel:.1e}; MC ELBO equal to the "
        f"image rows' ({a.mc_elbo:.4f})")


def test_nested_dicts_fc21_in_the_decoder_and_other_diffusers_classes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sd = Net().state_dict()
    torch.save(sd, tmp_path / "bare.pt")
    torch.save({"model_states": {"net": sd}, "epoch": 3}, tmp_path / "nested.pt")
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    flags = {"activation": "relu", "output_activation": "linear", "head_activation": False}
    want = entropy_elbo.estimate(tmp_path / "bare.pt", x, samples=4, device="cpu", **flags)
    got = entropy_elbo.estimate(tmp_path / "nested.pt", x, samples=4, device="cpu", **flags)
    assert got.entropy_elbo == want.entropy_elbo and got.mc_elbo == want.mc_elbo
    row("nested checkpoint dicts", "found the weights under model_states.net", "none",
        "entropy and MC ELBO equal to the bare state_dict's")

    torch.save(SameNames().state_dict(), tmp_path / "same.pt")
    intro = entropy_elbo.inspect(tmp_path / "same.pt", activation="relu")
    assert intro.encoder.name == "encoder.fc22" and (intro.h, intro.d) == (2, 4)
    row("fc21 in the decoder too", f"encoder variance {intro.encoder.name}; H=2, D=4 (no candidate list)",
        "--activation (MLP read from shapes)", "-")

    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderTiny"}))
    out = CliRunner().invoke(main, ["inspect", str(tmp_path / "tiny")]).output.strip()
    assert "a diffusers AutoencoderTiny, not an AutoencoderKL" in out and "\n" not in out
    row("other diffusers classes", out, "none (refused)", "-")


def test_sibling_module_import(tmp_path: Path) -> None:
    (tmp_path / "parts.py").write_text("from torch import nn\nWIDTH = 4\n")
    (tmp_path / "net.py").write_text(
        "from parts import WIDTH\nfrom torch import nn\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.encoder = nn.Linear(WIDTH, 4)\n        self.fc_mu = nn.Linear(4, 2)\n"
        "        self.fc_var = nn.Linear(4, 2)\n        self.decoder = nn.Linear(2, WIDTH)\n")
    torch.manual_seed(0)
    state = {"encoder.weight": torch.randn(4, 4), "encoder.bias": torch.zeros(4), "fc_mu.weight": torch.randn(2, 4),
             "fc_mu.bias": torch.zeros(2), "fc_var.weight": 0.1 * torch.randn(2, 4), "fc_var.bias": torch.zeros(2),
             "decoder.weight": torch.randn(4, 2), "decoder.bias": torch.zeros(4)}
    torch.save(state, tmp_path / "net.pt")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32))
    got = CliRunner().invoke(main, ["inspect", str(tmp_path / "net.pt"), "--model", f"{tmp_path / 'net.py'}:Net",
                                    "--data", str(tmp_path / "x.npy"), "--decoder-variance", "1", "--json"])
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout)["h"] == 2
    row("--model FILE.py importing a sibling module", "read (its folder on the import path)", "--model FILE.py:NAME",
        "-")


try:
    import pyro
    import pyro.distributions as pdist
except ImportError:  # pyro-ppl is in the test extra; without it only the Pyro rows are skipped
    pyro = pdist = None


class PyroEncoder(nn.Module):  # the Pyro VAE tutorial's encoder: returns (z_loc, z_scale) with z_scale = exp(h)
    def __init__(self, base: cs.StdScale) -> None:
        super().__init__()
        self.fc21, self.fc22 = base.enc_mu, base.enc_s

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc21(x), torch.exp(self.fc22(x))


class PyroVAE(nn.Module):
    """The tutorial's VAE (model and guide under pyro.plate) with a Gaussian likelihood of learned sigma^2."""

    def __init__(self) -> None:
        super().__init__()
        base = cs.StdScale()
        self.encoder, self.decoder, self.logsigma2 = PyroEncoder(base), base.dec, base.logsigma2

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", pdist.Normal(x.new_zeros(len(x), 2), 1.0).to_event(1))
            pyro.sample("obs", pdist.Normal(self.decoder(z), (0.5 * self.logsigma2).exp()).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(x)
            pyro.sample("latent", pdist.Normal(loc, scale).to_event(1))


class PyroGuideVAE(PyroVAE):
    """encode() returns the guide's own pyro Independent(Normal) (pyro's classes subclass torch's)."""

    def encode(self, x: torch.Tensor) -> object:
        loc, scale = self.encoder(x)
        return pdist.Normal(loc, scale).to_event(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


@pytest.mark.parametrize("cls", [PyroVAE, PyroGuideVAE])
def test_a_real_pyro_vae_agrees_with_pyros_own_elbo(cls: type) -> None:
    if pyro is None:
        pytest.skip("pyro-ppl is not installed (pip install 'entropy-elbo[test]')")
    model, (_, _, x) = cls(), cs.ppca()
    est = entropy_elbo.estimate(model, x.numpy(), samples=SAMPLES, device="cpu")
    with torch.no_grad():
        loc, scale = model.encoder(x)
        want = float(Normal(loc, scale).entropy().sum(-1).double().mean())
        pyro.set_rng_seed(7)
        elbo = pyro.infer.Trace_ELBO()
        runs = torch.tensor([-elbo.loss(model.model, model.guide, x) / len(x) for _ in range(SAMPLES)],
                            dtype=torch.float64)  # each: one sample per row, summed over rows, per row
    rel = abs(est.entropies["encoder"] - want) / abs(want)
    mine, se = float(runs.mean()), float(runs.std() / math.sqrt(len(runs)))
    z = abs(est.mc_elbo - mine) / math.hypot(se, est.mc_sampling_stderr)
    assert rel <= 1e-6 and z <= 4
    row(f"Pyro ({cls.__name__})", says(model, x), "none", f"encoder entropy rel. err {rel:.1e}; MC ELBO "
        f"{est.mc_elbo:.4f} vs Pyro Trace_ELBO {mine:.4f} ({z:.2f} SE)")
