"""Opening a diffusers AutoencoderKL runs nothing before the measurement (issue #24, item 2): its plan is what
diffusers' class defines, so `collapse` runs the encoder once per batch and never the decoder, and `collapse` and
`estimate` give exactly the numbers of the probed plan (the reading before) and of diffusers' own latent_dist."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from test_peers_diffusers import LATENT, own_entropies, tiny
from test_peers_diffusers import images as image_file

import entropy_elbo
from entropy_elbo.checkpoints.autoencoder_kl import DiffusersSource
from entropy_elbo.checkpoints.source import Source


@pytest.fixture()
def folder(tmp_path: Path) -> tuple[AutoencoderKL, torch.Tensor, Path, Path]:
    vae = tiny()
    vae.save_pretrained(tmp_path / "vae")
    x, data = image_file(tmp_path)
    return vae, x, tmp_path / "vae", data


def counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Calls (and rows) of diffusers' own encode and decode, counted on the class."""
    calls = {"encode": 0, "encoded_rows": 0, "decode": 0}
    encode, decode = AutoencoderKL.encode, AutoencoderKL.decode

    def counted_encode(self: AutoencoderKL, x: torch.Tensor, *args: object, **kw: object) -> object:
        calls["encode"] += 1
        calls["encoded_rows"] += len(x)
        return encode(self, x, *args, **kw)

    def counted_decode(self: AutoencoderKL, *args: object, **kw: object) -> object:
        calls["decode"] += 1
        return decode(self, *args, **kw)

    monkeypatch.setattr(AutoencoderKL, "encode", counted_encode)
    monkeypatch.setattr(AutoencoderKL, "decode", counted_decode)
    return calls


def test_collapse_encodes_each_row_once_and_never_decodes(folder: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    vae, x, path, data = folder
    calls = counting(monkeypatch)
    got = entropy_elbo.collapse(path, data, device="cpu", threads=1, batch_size=64)
    assert calls == {"encode": math.ceil(len(x) / 64), "encoded_rows": len(x), "decode": 0}
    mine = own_entropies(vae, x).flatten()  # float64 from diffusers' own latent_dist, one batch
    assert got.mean_entropy == pytest.approx(mine.tolist(), rel=1e-6, abs=1e-6)
    assert got.latent_shape == [LATENT, 4, 4]


def test_known_plan_gives_the_probed_plans_numbers(folder: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, path, data = folder
    runs = {"collapse": lambda: entropy_elbo.collapse(path, data, device="cpu", threads=1),
            "estimate": lambda: entropy_elbo.estimate(path, data, samples=1, device="cpu", threads=1,
                                                      decoder_variance="optimal")}
    now = {name: dataclasses.asdict(run()) for name, run in runs.items()}
    monkeypatch.setattr(DiffusersSource, "wrap", Source.wrap)  # the reading before: a probe run on random images
    before = {name: dataclasses.asdict(run()) for name, run in runs.items()}
    assert now == before
    assert now["estimate"]["mc_elbo"] is not None and math.isfinite(now["estimate"]["mc_elbo"])


def test_inspect_reads_the_plan_without_running_the_model(folder: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, path, data = folder
    calls = counting(monkeypatch)
    intro = entropy_elbo.inspect(path)  # no data: the config's sample_size
    assert (intro.h, intro.d, calls["encode"], calls["decode"]) == (LATENT * 4 * 4, 2 * 8 * 8, 0, 0)


def test_a_pythae_folder_is_opened_without_scoring_its_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pythae's reconstruction is the mean by its library's definition: no encode + decode pass over the scoring
    rows asks whether it is a sigmoid (the numbers: test_peers_pythae)."""
    from test_checkpoints_wild import save_data
    from test_peers_pythae import D, saved

    from entropy_elbo.checkpoints import code_readings

    _, folder = saved(tmp_path, "VAE")
    data = save_data(tmp_path, torch.rand(50, D))  # data in [0, 1], pythae's default sigmoid output
    scored = []
    monkeypatch.setattr(code_readings, "sigmoid_reason", lambda *a, **k: scored.append(a) or None)
    got = entropy_elbo.collapse(folder, data, device="cpu", threads=1)
    assert scored == [] and got.n == 50
