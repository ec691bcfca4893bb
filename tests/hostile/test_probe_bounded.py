"""A config's sizes are bounded before a probe is built (issue 26, family 3): `inspect` of a 580 KB diffusers
folder whose config says sample_size 2048 (no data given) reached 6.2 GB. The mechanism is
`autoencoder_kl.config_sides`: checked (type, sign) and bounded (PROBE_SIDE without data) before diffusers is
imported or anything built. Each case is its own process; its time is compared with a bare start-up's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from process_kit import assert_one_line, cli

from entropy_elbo.checkpoints.autoencoder_kl import PROBE_SIDE

diffusers = pytest.importorskip("diffusers")
PEAK_MB, SECONDS = 500, 5.0  # the bounds, the time beyond a bare start-up of the CLI


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("diffusers") / "vae"
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                                  layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=16)
    vae.save_pretrained(d)
    return d


def with_sample_size(folder: Path, tmp: Path, size: object) -> Path:
    out = tmp / "vae"
    out.mkdir()
    for f in folder.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "sample_size": size}))
    return out


def test_a_huge_sample_size_without_data_is_one_line_before_any_probe(folder: Path, tmp_path: Path) -> None:
    base = cli("--version", timeout=60)
    ran = cli("inspect", with_sample_size(folder, tmp_path, 2048), timeout=60)
    assert_one_line(ran, "config 'sample_size' 2048", "2048x2048", f"{PROBE_SIDE}x{PROBE_SIDE}", "pass --data")
    spent = ran.cpu_seconds - base.cpu_seconds  # CPU, not wall: the suite may share its cores
    assert ran.peak_mb < PEAK_MB and spent < SECONDS, (ran.peak_mb, ran.cpu_seconds, base.cpu_seconds)
    print(f"sample_size 2048: peak {ran.peak_mb:.0f} MB, {ran.cpu_seconds:.1f} s CPU "  # noqa: T201 -- for the issue
          f"(bare start-up {base.peak_mb:.0f} MB, {base.cpu_seconds:.1f} s CPU)")


@pytest.mark.parametrize("size", ["64", -8, [64], [64, True], 0.5])
def test_a_sample_size_that_is_no_size_is_one_line(folder: Path, tmp_path: Path, size: object) -> None:
    ran = cli("inspect", with_sample_size(folder, tmp_path, size), timeout=60)
    assert_one_line(ran, f"config 'sample_size' is {json.dumps(size)}", "a positive integer or [height, width]")


def test_a_sample_size_within_the_bound_is_probed(folder: Path, tmp_path: Path) -> None:
    ran = cli("inspect", with_sample_size(folder, tmp_path, 32), "--json", timeout=60)
    assert ran.returncode == 0, ran.stderr[-2000:]
    shown = json.loads(ran.stdout)
    assert (shown["h"], shown["d"]) == (4 * 16 * 16, 3 * 32 * 32)  # latent channels x (32 / 2)^2; 3 x 32 x 32
