"""a_h = mean_n(nu^2 + tau^2) needs only the encoder (issue #22 item 3): `collapse` and `inspect --data` compute it,
warn when it is far from 1 and stop when a guessed encoder-variance reading is what a_h says is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from code_styles import Base, StdLaplace, Unconverged, own_q, ppca
from torch import nn

import entropy_elbo
from entropy_elbo.checkpoints.introspect import PARAMS, to_log_var
from entropy_elbo.encoder_check import raw_output
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.latents import chunk_sums, encoder_a, merge_sums


class LogVar(Base):
    def encode(self, x):
        return self.enc_mu(x), self.enc_s(x)


def test_raw_output_inverts_every_parameterization() -> None:
    log_tau2 = torch.linspace(-6, 2, 9, dtype=torch.float64)
    for param in PARAMS:
        assert torch.allclose(to_log_var(raw_output(log_tau2, param), param), log_tau2, atol=1e-9), param


def test_streamed_a_h_matches_a_direct_mean_over_chunks() -> None:
    g = torch.Generator().manual_seed(0)
    nu, lt = torch.randn(50, 3, generator=g), torch.randn(50, 3, generator=g)
    sums = merge_sums(chunk_sums(nu[:17], lt[:17]), chunk_sums(nu[17:], lt[17:]))
    want = (nu.double() ** 2 + lt.double().exp()).mean(0)
    assert torch.allclose(encoder_a(sums), want, rtol=1e-12)


def test_collapse_at_a_stationary_point_gives_no_warning() -> None:
    _, _, x = ppca()
    assert entropy_elbo.collapse(LogVar(), x.numpy(), device="cpu").warnings == []


def test_collapse_warns_when_a_h_is_far_from_1() -> None:
    model, (_, _, x) = Unconverged(), ppca()
    col = entropy_elbo.collapse(model, x.numpy(), device="cpu", encoder_var_param="logvar")
    with torch.no_grad():
        q = own_q(model, x)
        a = (q.loc.double() ** 2 + q.variance.double()).mean(0)  # a_h from torch.distributions
    assert float((a - 1).abs().max()) > 0.4  # tau^2 is 10x the optimum's: the check can fail
    assert len(col.warnings) == 1 and "a_h = mean_n(nu^2 + tau^2) is far from 1" in col.warnings[0]
    assert f"z0 {float(a[0]):.3g}" in col.warnings[0] and "--encoder-var-param" in col.warnings[0]
    assert "warnings" in col.to_dict()


def test_a_guessed_log_variance_that_a_h_refutes_stops_and_names_the_flag() -> None:
    """A std-scale encoder before a Laplace decoder: no decoder score can check the encoder, a_h can."""
    model, (_, _, x) = StdLaplace(), ppca()
    with pytest.raises(EntropyElboError, match="--encoder-var-param std"):
        entropy_elbo.collapse(model, x.numpy(), device="cpu")
    col = entropy_elbo.collapse(model, x.numpy(), device="cpu", encoder_var_param="std")
    with torch.no_grad():
        want = own_q(model, x).entropy().double().mean(0)
    assert np.allclose(col.mean_entropy, want.numpy(), rtol=1e-6)
    assert col.warnings == []


def test_inspect_and_collapse_say_a_h_from_the_command_line(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from entropy_elbo.cli import main

    _, _, x = ppca()
    torch.save(Unconverged().state_dict(), tmp_path / "m.pt")
    np.save(tmp_path / "x.npy", x.numpy())
    common = ["--data", str(tmp_path / "x.npy"), "--model", f"{Path(__file__).parent / 'code_styles.py'}:Unconverged"]
    got = CliRunner().invoke(main, ["inspect", str(tmp_path / "m.pt"), *common, "--json"])
    assert got.exit_code == 0, got.output
    intro = json.loads(got.stdout)
    assert "max|a_h-1|" in intro["encoder"]["evidence"]
    assert any(n.startswith("warning: a_h") for n in intro["notes"])
    got = CliRunner().invoke(main, ["collapse", str(tmp_path / "m.pt"), *common])
    assert got.exit_code == 0, got.output
    assert "warning:" in got.output and "far from 1" in got.output


class SigmoidL1(nn.Module):  # plain tensors out, a sigmoid mean, trained with an L1 (Laplace) loss
    def __init__(self) -> None:
        super().__init__()
        self.enc, self.fc_mu, self.fc_var = nn.Linear(6, 8), nn.Linear(8, 2), nn.Linear(8, 2)
        self.dec = nn.Linear(2, 6)

    def encode(self, x):  # noqa: ANN001, ANN201
        h = torch.relu(self.enc(x))
        return self.fc_mu(h), self.fc_var(h)

    def decode(self, z):  # noqa: ANN001, ANN201
        return torch.sigmoid(self.dec(z))

    def loss(self, x):  # noqa: ANN001, ANN201
        mu, _ = self.encode(x)
        return nn.functional.l1_loss(self.decode(mu), x, reduction="sum")


def test_a_laplace_decoder_of_plain_tensors_is_not_called_bernoulli() -> None:
    torch.manual_seed(0)
    x = torch.rand(300, 6)
    with pytest.raises(EntropyElboError, match="names a Laplace \\(an L1 loss\\) likelihood") as err:
        entropy_elbo.estimate(SigmoidL1(), x.numpy(), samples=4, device="cpu")
    assert "BCE" not in str(err.value) and "Bernoulli" not in str(err.value)
