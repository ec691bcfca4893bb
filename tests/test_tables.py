"""Tables at 80 columns keep what a user needs whole: inspect's override flags, select's rows."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from entropy_elbo import report

FLAGS = "--decoder-var NAME --decoder-var-param logvar|logstd|std|var|softplus_std|softplus_var"


def render(table: object) -> str:
    console = Console(file=io.StringIO(), width=80, soft_wrap=False)
    console.print(table)
    return console.file.getvalue()


def test_inspect_keeps_every_override_flag_whole_at_80_columns() -> None:
    part = SimpleNamespace(kind="scalar", name="decoder.log_sigma2_parameter_with_a_long_name", param="logvar",
                           evidence="a parameter named like a log-variance, shape (1,), in the decoder's "
                                    "state_dict; no variance head", override=FLAGS, value=0.25)
    encoder = SimpleNamespace(**{**vars(part), "override": "--encoder-var NAME --encoder-var-param P",
                                 "value": None})
    intro = SimpleNamespace(source="model.ckpt", model_kind="MLP VAE (plain state_dict)", fmt="state_dict", h=2,
                            d=10, decoder=part, encoder=encoder, prior=None, notes=[], assumptions=[])
    text = render(report.inspection_table(intro))
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    words = " ".join(text.replace("│", " ").split())
    for flag in ("--decoder-var", "--decoder-var-param", "--encoder-var", "--encoder-var-param"):
        assert f" {flag} " in f" {words} ", flag  # whole, as a word of its own


def test_json_names_the_unit_of_every_figure_not_in_nats() -> None:
    import torch

    from entropy_elbo.compare import compare
    from entropy_elbo.data import make_synthetic
    from entropy_elbo.elbo import estimate
    from entropy_elbo.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2))
    x = make_synthetic("ppca", n=100, seed=0)
    est = estimate(model, [x], samples=3, seed=0).to_dict()
    assert est["units"] == "nats per data point"
    nats = {"entropy_elbo", "mc_elbo", "mc_stderr", "mc_sampling_stderr", "ppca_loglik", "decoder_entropy_stderr",
            "iwae", "iwae_stderr", "stationarity.gap", "stationarity.mc_elbo_at_sigma2_optimal",
            "stationarity.mc_stderr_at_sigma2_optimal", "stationarity.mc_sampling_stderr_at_sigma2_optimal"}
    figures = [k for k, v in est.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    figures += [f"stationarity.{k}" for k in est["stationarity"]]
    assert {f for f in figures if f not in nats} <= set(est["other_units"])
    assert est["other_units"]["relative_difference"].startswith("fraction")
    cmp = compare(model, x, sizes=[10], repeats=2, mc_samples=(1,)).to_dict()
    assert cmp["other_units"]["runs.seconds"] == "seconds of wall time per repeat"


def test_a_tiny_nonzero_figure_is_never_printed_as_zero() -> None:
    """A standard error of 4.2e-7 nats printed as 0.0000 would read as 'no error at all'."""
    assert report._fmt(4.2e-7) == "4.20e-07" and float(report._fmt(4.2e-7)) == 4.2e-7
    assert report._fmt(-3e-5) == "-3.00e-05"
    assert report._fmt(0.0) == "0.0000" and report._fmt(0.00012) == "0.0001" and report._fmt(1.5) == "1.5000"


def test_the_read_line_says_where_the_decoder_variance_is_or_that_nothing_holds_it() -> None:
    def intro(name: str | None, param: str | None) -> SimpleNamespace:
        return SimpleNamespace(source="m.pt", model_kind="plain MLP", fmt="state_dict", h=2, d=5,
                               decoder=SimpleNamespace(kind="fixed" if name is None else "scalar", name=name,
                                                       param=param),
                               encoder=SimpleNamespace(name="fc_var", param="logvar"))
    assert "decoder variance fixed (no parameter holds it);" in report.wild_summary(intro(None, "var"))
    assert "decoder variance scalar (logsigma2, logvar);" in report.wild_summary(intro("logsigma2", "logvar"))
