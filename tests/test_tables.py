"""Tables keep what a user needs whole: inspect's override flags at 80 columns, every number at any width."""

from __future__ import annotations

import io
import json
import re
from types import SimpleNamespace

import pytest
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


# ---------------------------------------------------------------------------------------------- any width (#26)

WIDTHS = (20, 40, 60, 80)


def whole(number: str, text: str) -> bool:
    """Whether `number` appears in `text` as a whole number: no digit or point glued to either end."""
    return re.search(rf"(?<![\d.]){re.escape(number)}(?!\d)", text) is not None


def estimate_figures(d: dict) -> list[str]:
    """The estimate table's numbers, rounded as it rounds them."""
    st = d["stationarity"]
    shown = [report.fmt(d[k]) for k in ("entropy_elbo", "mc_elbo", "mc_stderr", "mc_sampling_stderr", "iwae",
                                        "iwae_stderr") if d.get(k) is not None]
    shown += [report.fmt(v) for v in d["entropies"].values()] + [f"{100 * d['relative_difference']:.3f}"]
    shown += [report.fmt(st["r"], 5), report.fmt(st["gap"], 5), *(f"{a:.4g}" for a in st["a"][:8])]
    return shown + [report.short(st["sigma2"]), report.short(st["sigma2_optimal"]), *(str(d[k]) for k in "ndh")]


def collapse_figures(d: dict) -> list[str]:
    """The collapse table's numbers per latent."""
    return [f for r in d["latents"] for f in (f"z{r['latent']}", f"{r['mean_encoder_entropy']:.3f}",
                                             f"{r['distance_to_prior_entropy']:.3f}", f"{r['mean_kl']:.3f}",
                                             f"{r['encoder_mean_variance']:.3g}",
                                             f"{r['lucas_fraction_kl_below_epsilon']:.3f}")]


def comparison_figures(d: dict) -> list[str]:
    """The comparison table's numbers per estimator and size."""
    shown = []
    for r in d["runs"]:
        shown += [str(r["n"]), report.fmt(r["mean"]), f"{r['std']:.3g}", f"{1000 * r['seconds']:.3g}"]
        shown += [f"{r[k]:.3g}" for k in ("variance_ratio", "speed_ratio") if r[k] is not None]
    return shown


def selection_figures(d: dict) -> list[str]:
    """The selection tables' numbers: each BIC's pick and share, mean and std per H."""
    shown = []
    for s in d["segments"]:
        shown += [str(s["start_row"]), str(s["stop_row"]), str(s["tail_batches"])]
        for m in (s["entropy_bic"], s["sampled_bic"]):
            shown += [f"H={m['selected']}", f"{100 * m['agreement']:.0f}%"]
            shown += [f"{v:.2f}" for v in m["mean"].values()] + [f"{v:.3f}" for v in m["std"].values()]
    return shown


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Each command's result, with the call that prints it (as_json -> None) and the numbers its table shows."""
    import torch

    from entropy_elbo.checkpoints import LoadOptions, inspect_checkpoint, save_checkpoint
    from entropy_elbo.compare import compare
    from entropy_elbo.data import make_synthetic
    from entropy_elbo.elbo import estimate
    from entropy_elbo.latents import collapse
    from entropy_elbo.models import ModelConfig, build_model
    from entropy_elbo.select import select_stream, summarize, window_segments

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=3))
    x = make_synthetic("ppca", n=200, seed=0)
    path = tmp_path_factory.mktemp("tables") / "a_checkpoint_with_a_rather_long_name.safetensors"
    save_checkpoint(model, path)
    est = estimate(model, [x], samples=3, seed=0)
    col = collapse(model, [x])
    intro = inspect_checkpoint(path, LoadOptions())
    cmp = compare(model, x, sizes=[10, 100], repeats=3, mc_samples=(1, 10))
    sel = select_stream([x], (1, 2, 3), batch_size=10, samples=2)
    summaries = summarize(sel, window_segments(sel, 10), tail=4)
    return {
        "estimate": (lambda j: report.print_estimate(est, str(path), j), estimate_figures),
        "collapse": (lambda j: report.print_collapse(col, str(path), j), collapse_figures),
        "inspect": (lambda j: report.print_inspection(intro, j), lambda d: [str(d["h"]), str(d["d"]),
                                                                          report.short(d["decoder"]["value"])]),
        "compare": (lambda j: report.print_comparison(cmp, j), comparison_figures),
        "select": (lambda j: report.print_selection(summaries, sel, "ppca", "n = 10 rows per batch", j),
                   selection_figures),
    }


@pytest.mark.parametrize("command", ["estimate", "collapse", "inspect", "compare", "select"])
def test_a_table_never_cuts_a_number_at_any_width(outputs: dict, command: str, monkeypatch, capsys) -> None:
    """Every number of the JSON output appears whole in the table, rounded as the table rounds it, and no "…"
    anywhere, at 20, 40, 60 and 80 columns (narrow ones turn the table into "column: value" lines)."""
    show, figures = outputs[command]
    show(True)
    shown = figures(json.loads(capsys.readouterr().out))
    assert shown
    for width in WIDTHS:
        monkeypatch.setenv("COLUMNS", str(width))
        show(False)
        text = capsys.readouterr().out
        assert "…" not in text, (width, text)
        cut = [number for number in shown if not whole(number, text)]
        assert not cut, (width, cut, text)


def test_a_table_that_fits_is_laid_out_by_rich_unchanged() -> None:
    """At a width where every column fits whole, `show` leaves the table to rich: the same text as before."""
    from rich.table import Table

    from entropy_elbo.report.layout import show

    def table() -> Table:
        t = Table(title="t")
        t.add_column("name")
        t.add_column("value", justify="right")
        t.add_row("entropy ELBO", "-5.3104 nats/point")
        return t

    mine, theirs = (Console(file=io.StringIO(), width=80, soft_wrap=True) for _ in range(2))
    show(table(), mine)
    theirs.print(table())
    assert mine.file.getvalue() == theirs.file.getvalue()
