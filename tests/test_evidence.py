"""`inspect --data` says what a reading gives on the rows (issue #22): tau^2 outside a sane range and decoder means
far outside the data's range are warnings from the library, the same lines in Python and on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from code_styles import Logits, StdScale, logits_data, ppca

import entropy_elbo
from entropy_elbo.cli import main

STYLES = Path(__file__).parent / "code_styles.py"


def warnings_of(tmp_path: Path, model: torch.nn.Module, x: torch.Tensor, **flags: str) -> list[str]:
    """The warning notes of `inspect`, from Python and from the CLI's --json (asserted equal)."""
    torch.save(model.state_dict(), tmp_path / "m.pt")
    np.save(tmp_path / "x.npy", x.numpy())
    spec = f"{STYLES}:{type(model).__name__}"
    intro = entropy_elbo.inspect(tmp_path / "m.pt", tmp_path / "x.npy", model=spec, **flags)
    args = [a for k, v in flags.items() for a in (f"--{k.replace('_', '-')}", v)]
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "m.pt"), "--data", str(tmp_path / "x.npy"),
                                       "--model", spec, *args, "--json"])
    assert result.exit_code == 0, result.output
    cli = [n for n in json.loads(result.stdout)["notes"] if n.startswith("warning:")]
    mine = [n for n in intro.notes if n.startswith("warning:")]
    assert cli == mine
    return mine


def test_a_right_reading_earns_no_warning(tmp_path: Path) -> None:
    assert warnings_of(tmp_path, StdScale(), ppca()[2]) == []


def test_a_std_read_as_a_log_variance_of_huge_outputs_is_said(tmp_path: Path) -> None:
    model = StdScale()
    with torch.no_grad():
        model.enc_s.bias.add_(5.0)  # std = e^(s + 5), about 50: read as a log-variance, tau^2 = e^(tens)
    said = " ".join(warnings_of(tmp_path, model, ppca()[2], encoder_var_param="logvar"))
    assert "encoder tau^2 outside [1e-12, 1000] for 2 of 2 latents" in said and "--encoder-var-param" in said
    assert "encoder tau^2 = exp(" in said


def test_logits_read_as_means_are_said(tmp_path: Path) -> None:
    x, _ = logits_data()
    said = " ".join(warnings_of(tmp_path, Logits(), x, output_activation="linear", decoder_variance="optimal"))
    assert "decoder means mu(nu) on 256 data rows" in said and "outside its range [0, 1]" in said
    assert "--output-activation sigmoid" in said
    right = warnings_of(tmp_path, Logits(), x, output_activation="sigmoid", decoder_variance="optimal")
    assert not any("decoder means" in n for n in right)


def test_a_likelihood_made_gaussian_by_a_flag_is_a_warning_of_the_likelihood(tmp_path: Path) -> None:
    x, _ = logits_data()
    est = entropy_elbo.estimate(Logits(), x.numpy(), samples=8, device="cpu", decoder_variance="optimal",
                                output_activation="sigmoid")
    said = [w for w in est.warnings if "likelihood" in w]
    assert len(said) == 1 and said[0].startswith("decoder likelihood Gaussian by --output-activation sigmoid alone")
    assert any(n == f"warning: {said[0]}" for n in warnings_of(tmp_path, Logits(), x, output_activation="sigmoid",
                                                               decoder_variance="optimal"))
    plain = entropy_elbo.estimate(StdScale(), ppca()[2].numpy(), samples=0, device="cpu", output_activation="linear")
    assert not any("likelihood" in w for w in plain.warnings)
