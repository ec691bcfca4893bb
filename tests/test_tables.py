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
