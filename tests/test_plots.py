"""Figures: the relative difference readable after convergence, latents named, the extension picks the format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from entropy_elbo.checkpoints import save_checkpoint
from entropy_elbo.cli import main
from entropy_elbo.data import make_synthetic, save_array
from entropy_elbo.models import ModelConfig, build_model
from entropy_elbo.plot import centred_average, plot_run


def rows() -> list[dict]:
    """40 epochs: the ELBO crosses 0 early (a gap of 12,000 %), then converges to a gap of 0.1 %."""
    out = []
    for e in range(1, 41):
        gap = 120.0 / e**3 if e < 5 else 0.001 * (-1) ** e
        out.append({"epoch": e, "mc_elbo": -5.0 + 0.1 * e, "entropy_elbo": -5.1 + 0.1 * e, "relative_gap": gap,
                    "latent_entropies": [0.2, 1.35 - 0.001 * e, 0.9]})
    return out


def test_the_run_figure_names_latents_and_keeps_the_converged_gap_readable(tmp_path: Path) -> None:
    fig = plot_run(rows(), tmp_path / "f.png", title="vae1 on ppca (run/)")
    top, latents, gap, bars = fig.axes
    assert fig._suptitle.get_text() == "vae1 on ppca (run/)"
    assert gap.get_yscale() == "symlog"
    assert gap.yaxis.get_transform().linthresh == 0.1  # the converged |gap| of 0.1 %: drawn linearly
    assert max(gap.lines[0].get_ydata()) == 12_000.0  # the early value is still drawn, compressed
    labels = [t.get_text() for t in latents.get_legend().get_texts()]
    assert labels[:3] == ["z0", "z1", "z2"] and [ln.get_label() for ln in latents.lines[:3]] == ["z0", "z1", "z2"]
    assert [t.get_text() for t in bars.get_xticklabels()] == ["z1", "z2", "z0"]  # highest entropy first
    assert [b.get_height() for b in bars.patches] == [1.35 - 0.04, 0.9, 0.2]
    with Image.open(tmp_path / "f.png") as img:
        assert img.size == (1210, 825)  # 11 x 7.5 inches at 110 dpi
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)
    red = (np.abs(pixels - [214, 39, 40]).max(1) < 3).sum()  # tab:red: the collapsed latent's bar
    assert red > 500
    plot_run(rows(), tmp_path / "f.pdf")
    assert (tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"


def test_the_centred_average_does_not_lag() -> None:
    ramp = [float(i) for i in range(10)]
    assert centred_average(ramp, 5) == [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 7.5, 8.0]
    assert centred_average([0.0, 0.0, 3.0, 0.0, 0.0], 3) == [0.0, 1.0, 1.0, 1.0, 0.0]  # the peak stays centred


def test_collapse_and_plot_write_the_format_their_extension_names(tmp_path: Path) -> None:
    torch.manual_seed(0)
    save_checkpoint(build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2)), tmp_path / "m.safetensors")
    save_array(make_synthetic("ppca", n=60, seed=0), tmp_path / "x.npy")
    res = CliRunner().invoke(main, ["collapse", str(tmp_path / "m.safetensors"), "--data", str(tmp_path / "x.npy"),
                                    "--plot", str(tmp_path / "c.pdf")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c.pdf").read_bytes()[:5] == b"%PDF-"
    res = CliRunner().invoke(main, ["collapse", str(tmp_path / "m.safetensors"), "--data", str(tmp_path / "x.npy"),
                                    "--plot", str(tmp_path / "c.svg")])
    assert res.exit_code == 0 and b"<svg" in (tmp_path / "c.svg").read_bytes()[:400]
    assert "m.safetensors (vae1) on" in (tmp_path / "c.svg").read_text()  # the title names model and data
