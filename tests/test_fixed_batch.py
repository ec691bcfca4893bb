"""The fixed batch a training run measures each epoch (entropy ELBO and MC ELBO in eval mode), and `plot`'s
difference panel drawn from it: relative where the ELBO stays away from 0, in nats where it crosses 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from entropy_elbo.data import make_synthetic
from entropy_elbo.elbo import estimate
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models import ModelConfig, build_model
from entropy_elbo.train import TrainConfig, train


def trained(x: torch.Tensor, held: torch.Tensor | None, samples: int = 2) -> tuple[torch.nn.Module, list[dict]]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2, hidden=(8,)))
    return model, train(model, x, TrainConfig(epochs=2, batch_size=500, samples=samples, seed=3), heldout=held,
                        progress=False)


def test_each_epoch_logs_the_pair_on_1000_held_out_rows_drawn_with_the_runs_seed() -> None:
    x = torch.as_tensor(make_synthetic("ppca", n=1700, seed=0))
    model, rows = trained(x[:500], x[500:])
    fixed = rows[-1]["fixed_batch"]
    assert fixed["rows"] == "holdout" and fixed["n"] == 1000 and fixed["mc_samples"] == 2  # min(4, training's 2)
    pick = torch.randperm(1200, generator=torch.Generator().manual_seed(3))[:1000].sort().values
    want = estimate(model.eval(), [x[500:][pick]], samples=2, seed=3)  # the final model: measured after the epoch
    assert fixed["entropy_elbo"] == pytest.approx(want.entropy_elbo, rel=1e-12)
    assert fixed["mc_elbo"] == pytest.approx(want.mc_elbo, rel=1e-12)
    assert fixed["mc_stderr"] == pytest.approx(want.mc_stderr, rel=1e-9)
    assert fixed["relative_difference"] == pytest.approx((want.mc_elbo - want.entropy_elbo) / abs(want.mc_elbo))
    assert rows[0]["fixed_batch"]["mc_elbo"] != fixed["mc_elbo"]  # measured each epoch, not once


def test_without_a_holdout_the_fixed_rows_are_training_rows_and_training_draws_are_untouched() -> None:
    x = torch.as_tensor(make_synthetic("ppca", n=600, seed=1))
    model, rows = trained(x, None, samples=8)
    fixed = rows[-1]["fixed_batch"]
    assert fixed["rows"] == "train" and fixed["n"] == 600 and fixed["mc_samples"] == 4
    want = estimate(model.eval(), [x], samples=4, seed=3)
    assert fixed["mc_elbo"] == pytest.approx(want.mc_elbo, rel=1e-12)
    torch.manual_seed(0)  # the same run by hand without the fixed batch: the training ELBO is the same number
    from entropy_elbo import train as train_module

    again = build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2, hidden=(8,)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "choose", lambda *a: None)
        plain = train(again, x, TrainConfig(epochs=2, batch_size=500, samples=8, seed=3), progress=False)
    assert "fixed_batch" not in plain[-1] and plain[-1]["mc_elbo"] == rows[-1]["mc_elbo"]


def log_rows(mc: list[float], f_h: list[float], fixed: bool = True) -> list[dict]:
    """Training log rows whose fixed batch holds the given pair, and a noisy sampled ELBO far from it."""
    out = []
    for e, (m, f) in enumerate(zip(mc, f_h, strict=True), 1):
        row = {"epoch": e, "mc_elbo": m + 5 * (-1) ** e, "entropy_elbo": f, "relative_gap": 0.5 * (-1) ** e,
               "latent_entropies": [0.2, 1.3]}
        if fixed:
            row["fixed_batch"] = {"rows": "holdout", "n": 1000, "mc_samples": 4, "entropy_elbo": f, "mc_elbo": m,
                                  "mc_stderr": 0.01, "relative_difference": (m - f) / abs(m)}
        out.append(row)
    return out


def test_the_difference_panel_uses_the_fixed_batch_not_the_sampled_training_elbo(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from entropy_elbo.plot import plot_run

    mc = [-50.0 + e for e in range(20)]
    fig = plot_run(log_rows(mc, [m - 0.1 for m in mc]), tmp_path / "f.png")
    top, _, gap, _ = fig.axes
    assert list(gap.lines[0].get_ydata()) == pytest.approx([100 * 0.1 / abs(m) for m in mc])
    assert "fixed 1000 held-out rows" in gap.get_title() and "%" in gap.get_title()
    labels = [ln.get_label() for ln in top.lines]
    assert "entropy ELBO (fixed 1000 held-out rows, eval)" in labels and "MC ELBO (fixed 1000 held-out rows, eval)" \
        in labels
    old = plot_run(log_rows(mc, [m - 0.1 for m in mc], fixed=False), tmp_path / "g.png").axes[2]
    assert "noisy: this log has no fixed batch" in old.get_title().replace("\n", " ")


def test_a_late_elbo_crossing_zero_is_drawn_in_nats_not_as_an_exploding_percentage(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from entropy_elbo.plot import plot_run

    mc = [-2.0 + 0.21 * e for e in range(20)]  # crosses 0 between epochs 10 and 11: |ELBO| down to 0.1
    fig = plot_run(log_rows(mc, [m - 0.3 for m in mc]), tmp_path / "f.png")
    gap = fig.axes[2]
    assert list(gap.lines[0].get_ydata()) == pytest.approx([0.3] * 20)
    title = gap.get_title().replace("\n", " ")
    assert "nats" in gap.get_ylabel() and "%" not in title and "crosses 0" in title
    assert gap.yaxis.get_transform().linthresh == pytest.approx(0.3)


def test_a_damaged_fixed_batch_in_a_log_is_refused_in_one_line(tmp_path: Path) -> None:
    from entropy_elbo.plot import run_log

    row = log_rows([-3.0], [-3.1])[0]
    row["fixed_batch"]["mc_elbo"] = "x"
    (tmp_path / "log.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(EntropyElboError, match=r"line 1: field 'fixed_batch' is .*the log is damaged"):
        run_log(tmp_path / "log.jsonl")
