"""What a model's own code returns, read by its meaning (issue #22): each style read right or refused by name,
compared with torch.distributions on the model's own outputs."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from code_styles import (
    DictOut,
    DictTwoMeans,
    IndependentOut,
    LaplaceDecoder,
    Logits,
    LogStd,
    NormalOut,
    OddHeads,
    SampleFirst,
    Siblings,
    StdScale,
    forward_q,
    logits_data,
    own_q,
    ppca,
)
from torch.distributions import Normal, kl_divergence

import entropy_elbo
from entropy_elbo.cli import main
from entropy_elbo.errors import EntropyElboError

sys.path.insert(0, str(Path(__file__).parent))


def independent_elbo(model, x: torch.Tensor, samples: int = 64, mean=None, log_sigma2=None):  # noqa: ANN001
    """Monte Carlo ELBO from torch.distributions on the model's own outputs, nats per data point, and its SE."""
    torch.manual_seed(1)
    with torch.no_grad():
        q = own_q(model, x) if not isinstance(model, Siblings) else Normal(
            model.fc_mu(model.encoder(x)), (0.5 * model.fc_var(model.encoder(x))).exp())
        kl = kl_divergence(q, Normal(0.0, 1.0)).sum(-1).double()
        ll = []
        for _ in range(samples):
            z = q.rsample()
            mu = (mean or model.decode)(z) if not isinstance(model, Siblings) else model.decoder(z)
            ll.append(Normal(mu, (0.5 * log_sigma2(mu)).exp()).log_prob(x).sum(-1).double())
        rows = torch.stack(ll).mean(0) - kl
    return float(rows.mean()), float(rows.std() / math.sqrt(len(rows)))


@pytest.mark.parametrize("cls", [StdScale, LogStd, NormalOut, IndependentOut, SampleFirst, Siblings])
def test_each_style_is_read_right_without_flags(cls: type) -> None:
    model = cls()
    _, _, x = ppca()
    est = entropy_elbo.estimate(model, x.numpy(), samples=64, device="cpu")
    with torch.no_grad():
        q = own_q(model, x) if cls is not Siblings else Normal(model.fc_mu(x), (0.5 * model.fc_var(x)).exp())
        want = float(q.entropy().sum(-1).double().mean())
    assert est.entropies["encoder"] == pytest.approx(want, rel=1e-6)
    mine, se = independent_elbo(model, x, log_sigma2=lambda mu: model.logsigma2.expand_as(mu))
    assert abs(est.mc_elbo - mine) <= 4 * math.hypot(se, est.mc_sampling_stderr)
    enc = " ".join(a["evidence"] for a in est.assumptions if a["what"].startswith("encoder variance"))
    assert ("distribution" in enc) if cls in (NormalOut, IndependentOut) else ("scored on 256 data rows" in enc)


def test_a_std_read_as_a_log_variance_would_be_far_off() -> None:
    """The closed forms differ by more than the tolerance, so the test above can fail."""
    model = StdScale()
    _, _, x = ppca()
    wrong = entropy_elbo.estimate(model, x.numpy(), samples=0, device="cpu", encoder_var_param="logvar")
    right = entropy_elbo.estimate(model, x.numpy(), samples=0, device="cpu")
    assert abs(wrong.entropies["encoder"] - right.entropies["encoder"]) > 0.5


def test_a_laplace_decoder_is_refused_by_name_and_collapse_still_reads_the_encoder() -> None:
    model = LaplaceDecoder()
    _, _, x = ppca()
    with pytest.raises(EntropyElboError, match="returned a Laplace distribution, not a Gaussian"):
        entropy_elbo.estimate(model, x.numpy(), samples=8, device="cpu")
    col = entropy_elbo.collapse(model, x.numpy(), device="cpu")
    with torch.no_grad():
        want = own_q(model, x).entropy().double().mean(0)
    assert np.allclose(col.mean_entropy, want.numpy(), rtol=1e-6)


def test_logits_are_refused_without_a_flag_and_read_right_with_the_one_named() -> None:
    model = Logits()
    x, _ = logits_data()
    with pytest.raises(EntropyElboError, match="--output-activation sigmoid"):
        entropy_elbo.estimate(model, x.numpy(), samples=8, device="cpu", decoder_variance="optimal")
    est = entropy_elbo.estimate(model, x.numpy(), samples=64, device="cpu", decoder_variance="optimal",
                                output_activation="sigmoid")
    with torch.no_grad():  # sigma*^2: the mean squared error of the model's own sigmoid means
        q = own_q(model, x)
        sq = torch.stack([(torch.sigmoid(model.decode(q.sample())) - x).pow(2) for _ in range(64)]).mean()
    mine, se = independent_elbo(model, x, mean=lambda z: torch.sigmoid(model.decode(z)),
                                log_sigma2=lambda mu: sq.log().expand_as(mu))
    assert abs(est.mc_elbo - mine) <= 4 * math.hypot(se, est.mc_sampling_stderr)


def test_model_file_imports_a_sibling_module(tmp_path: Path) -> None:
    (tmp_path / "layers.py").write_text("from torch import nn\nWIDTH = 4\n")
    body = ["self.encoder = nn.Linear(WIDTH, 4)", "self.fc_mu = nn.Linear(4, 2)", "self.fc_var = nn.Linear(4, 2)",
            "self.decoder = nn.Linear(2, WIDTH)"]
    (tmp_path / "net.py").write_text("from layers import WIDTH\nfrom torch import nn\n\nclass Net(nn.Module):\n"
                                     "    def __init__(self):\n        super().__init__()\n"
                                     + "".join(f"        {line}\n" for line in body))
    torch.manual_seed(0)
    sys.path.insert(0, str(tmp_path))
    try:
        from net import Net  # noqa: PLC0415
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("layers", None)
    torch.save(Net().state_dict(), tmp_path / "net.pt")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32))
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "net.pt"), "--model", f"{tmp_path / 'net.py'}:Net",
                                       "--data", str(tmp_path / "x.npy"), "--decoder-variance", "1"])
    assert "importing it raised" not in result.output
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("cls", [OddHeads, DictOut])
def test_heads_are_found_by_the_computation_of_forward(cls: type) -> None:
    model = cls()
    _, _, x = ppca()
    opened = entropy_elbo.open_checkpoint(model, x.numpy())
    note = " ".join(opened.introspection.notes)
    assert "heads found by the computation" in note
    found = "encoder -> to_center and encoder -> to_spread" if cls is OddHeads else "'log_std' (logstd)"
    assert found in note
    est = entropy_elbo.estimate(model, x.numpy(), samples=64, device="cpu")
    want = float(forward_q(model, x).entropy().sum(-1).double().mean())
    assert est.entropies["encoder"] == pytest.approx(want, rel=1e-6)
    torch.manual_seed(1)
    with torch.no_grad():
        q = forward_q(model, x)
        kl = kl_divergence(q, Normal(0.0, 1.0)).sum(-1).double()
        dec = model.decoder if cls is OddHeads else model.dec
        ll = torch.stack([Normal(dec(q.sample()), model.logsigma2.exp().sqrt()).log_prob(x).sum(-1).double()
                          for _ in range(64)]).mean(0)
    rows = ll - kl
    se = float(rows.std() / math.sqrt(len(rows)))
    assert abs(est.mc_elbo - float(rows.mean())) <= 4 * math.hypot(se, est.mc_sampling_stderr)


def test_a_forward_dict_with_two_means_is_one_line_listing_them() -> None:
    _, _, x = ppca()
    with pytest.raises(EntropyElboError, match=r"2 mean-like key\(s\) \(mu, loc\) and 1 variance-like key\(s\) "
                                               r"\(log_std\).*--encoder-var-param"):
        entropy_elbo.estimate(DictTwoMeans(), x.numpy(), samples=0, device="cpu")
