"""diffusers AutoencoderKL: a `save_pretrained` folder and single safetensors files, built with the real diffusers.

Every figure is checked against torch.distributions on the model's own `encode(x).latent_dist` and
`decode(z).sample`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file
from test_checkpoints_wild import assert_within_4_se, independent_mc_elbo, one_line_error, run, run_json
from torch.distributions import Normal

C, S, N, LATENT = 2, 8, 200, 2


def tiny(channels: tuple[int, ...] = (8, 16), groups: int = 4, seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    blocks = len(channels)
    return AutoencoderKL(in_channels=C, out_channels=C, down_block_types=("DownEncoderBlock2D",) * blocks,
                         up_block_types=("UpDecoderBlock2D",) * blocks, block_out_channels=channels,
                         layers_per_block=1, latent_channels=LATENT, norm_num_groups=groups, sample_size=S).eval()


def images(tmp_path: Path, seed: int = 1) -> tuple[torch.Tensor, Path]:
    x = torch.rand(N, C, S, S, generator=torch.Generator().manual_seed(seed)) * 2 - 1  # diffusers' [-1, 1]
    path = tmp_path / "images.npy"
    np.save(path, x.numpy())
    return x, path


def own_entropies(vae: AutoencoderKL, x: torch.Tensor) -> torch.Tensor:
    """mean_n H[q(z_h|x_n)] per latent from diffusers' own latent distribution, (L, h, w)."""
    with torch.no_grad():
        dist = vae.encode(x).latent_dist
    return Normal(0.0, (0.5 * dist.logvar.double()).exp()).entropy().mean(0)


def test_save_pretrained_folder(tmp_path: Path) -> None:
    vae = tiny()
    vae.save_pretrained(tmp_path / "vae")
    x, data = images(tmp_path)
    side = S // 2
    info = run_json("inspect", tmp_path / "vae", "--data", data)
    assert (info["fmt"], info["h"], info["d"], info["latent_shape"]) == ("diffusers", LATENT * side**2, C * S * S,
                                                                          [LATENT, side, side])
    assert info["encoder"]["name"] == "encode(x).latent_dist.logvar" and info["decoder"]["kind"] == "fixed"
    assert any(a["what"] == "pixels scaled to [-1, 1]" for a in info["assumptions"])

    got = run_json("collapse", tmp_path / "vae", "--data", data)
    mine = own_entropies(vae, x)  # (L, h, w)
    rows = sorted(got["latents"], key=lambda r: r["latent"])
    assert [r["mean_encoder_entropy"] for r in rows] == pytest.approx(mine.flatten().tolist(), rel=1e-4)
    channels = got["channels"]
    assert [c["mean_encoder_entropy"] for c in channels] == pytest.approx(mine.mean((1, 2)).tolist(), rel=1e-4)
    assert [c["collapsed"] for c in channels] == (mine.mean((1, 2)) > 1.0).tolist()

    line = one_line_error(run("estimate", tmp_path / "vae", "--data", data))
    assert "implies no Gaussian sigma^2; the entropy form does not hold" in line and "optimal" in line
    est = run_json("estimate", tmp_path / "vae", "--data", data, "--decoder-variance", "0.1", "--samples", "16")
    assert est["entropy_elbo"] is None

    def encode(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = vae.encode(v).latent_dist
        return dist.mean.flatten(1), dist.logvar.flatten(1)

    def decode(z: torch.Tensor) -> torch.Tensor:
        return vae.decode(z.reshape(-1, LATENT, side, side)).sample

    want, se = independent_mc_elbo(encode, decode, torch.tensor(0.1), x, 16)
    assert_within_4_se(est, want, se)

    best = run_json("estimate", tmp_path / "vae", "--data", data, "--decoder-variance", "optimal", "--samples", "16")
    with torch.no_grad():  # sigma*^2 = mean_n E_q ||x - mu(z)||^2 / D, by our own sampling
        nu, log_var = encode(x)
        z = nu + (0.5 * log_var).exp() * torch.randn(nu.shape, generator=torch.Generator().manual_seed(5))
        sigma2 = float((decode(z).double() - x.double()).pow(2).mean())
    assert best["stationarity"]["sigma2"] == pytest.approx(sigma2, rel=0.02)
    want, se = independent_mc_elbo(encode, decode, torch.tensor(best["stationarity"]["sigma2"]), x, 16)
    assert_within_4_se(best, want, se)

    np.save(data, (x.numpy() + 1) * 127.5)  # 8-bit pixels, not rescaled
    line = one_line_error(run("collapse", tmp_path / "vae", "--data", data))
    assert "diffusers AutoencoderKL expects pixels scaled to [-1, 1], but the data spans [0" in line


def test_single_safetensors_files(tmp_path: Path) -> None:
    x, data = images(tmp_path)
    vae = tiny()  # groups 4: the config beside the file is needed, and used
    vae.save_pretrained(tmp_path / "vae")
    got = run_json("collapse", tmp_path / "vae" / "diffusion_pytorch_model.safetensors", "--data", data)
    mine = own_entropies(vae, x).flatten()
    assert [r["mean_encoder_entropy"] for r in sorted(got["latents"], key=lambda r: r["latent"])] == \
        pytest.approx(mine.tolist(), rel=1e-4)

    lone = tmp_path / "lone.safetensors"  # no config anywhere: read from the shapes, diffusers' default 32 groups
    save_file(vae.state_dict(), lone)
    assert one_line_error(run("inspect", lone)) == (
        f"Error: {lone}: an AutoencoderKL with block channels [8, 16]: its GroupNorm group count is not in the "
        "weights and diffusers' default 32 does not divide them; put the model's config.json beside the file")
    wide = tiny(channels=(32, 32), groups=32, seed=2)
    save_file(wide.state_dict(), lone)
    got = run_json("collapse", lone, "--data", data)
    mine = own_entropies(wide, x).flatten()
    assert [r["mean_encoder_entropy"] for r in sorted(got["latents"], key=lambda r: r["latent"])] == \
        pytest.approx(mine.tolist(), rel=1e-4)


def to_original_names(state: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
    """diffusers' AutoencoderKL keys -> the original CompVis/LDM ones (as in the SD VAE .safetensors releases)."""
    out = {}
    for key, value in state.items():
        k = re.sub(r"down_blocks\.(\d+)\.resnets\.", r"down.\1.block.", key)
        k = re.sub(r"down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.downsample.", k)
        k = re.sub(r"up_blocks\.(\d+)\.resnets\.", lambda m: f"up.{blocks - 1 - int(m[1])}.block.", k)
        k = re.sub(r"up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"up.{blocks - 1 - int(m[1])}.upsample.", k)
        k = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", k)
        k = k.replace("mid_block.attentions.0.", "mid.attn_1.").replace("conv_shortcut", "nin_shortcut")
        k = k.replace("conv_norm_out", "norm_out").replace("group_norm", "norm").replace("to_out.0", "proj_out")
        k = re.sub(r"\.to_([qkv])\.", r".\1.", k)
        if ".attn_1." in k and k.endswith("weight") and value.dim() == 2:
            value = value[:, :, None, None]  # LDM keeps the attention projections as 1x1 convolutions
        out["first_stage_model." + k] = value.contiguous()
    return out


def test_original_format_stable_diffusion_file(tmp_path: Path) -> None:
    x, data = images(tmp_path)
    vae = tiny(channels=(32, 32), groups=32, seed=3)
    path = tmp_path / "sd-vae.safetensors"
    save_file(to_original_names(vae.state_dict(), 2), path)
    info = run_json("inspect", path, "--data", data)
    assert info["fmt"] == "diffusers" and any("the weights' shapes" in a["what"] for a in info["assumptions"])
    got = run_json("collapse", path, "--data", data)
    mine = own_entropies(vae, x).flatten()
    assert [r["mean_encoder_entropy"] for r in sorted(got["latents"], key=lambda r: r["latent"])] == \
        pytest.approx(mine.tolist(), rel=1e-4)
    est = run_json("estimate", path, "--data", data, "--decoder-variance", "0.1", "--samples", "16")

    def encode(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = vae.encode(v).latent_dist
        return dist.mean.flatten(1), dist.logvar.flatten(1)

    want, se = independent_mc_elbo(encode, lambda z: vae.decode(z.reshape(-1, LATENT, S // 2, S // 2)).sample,
                                   torch.tensor(0.1), x, 16)
    assert_within_4_se(est, want, se)  # the decoder's up blocks (stored in reverse order) were renamed right


def test_flat_rows_are_reshaped_to_the_images_the_autoencoder_takes(tmp_path: Path) -> None:
    """Flat rows (N, C*S*S): images when in_channels and D fix the side; the same latents as the images give."""
    vae = tiny()
    vae.save_pretrained(tmp_path / "vae")
    x, data = images(tmp_path)
    np.save(tmp_path / "flat.npy", x.reshape(N, -1).numpy())
    info = run_json("inspect", tmp_path / "vae", "--data", tmp_path / "flat.npy")
    assert f"rows reshaped to images {C}x{S}x{S}" in " ".join(info["notes"])
    got = run_json("collapse", tmp_path / "vae", "--data", tmp_path / "flat.npy")
    rows = sorted(got["latents"], key=lambda r: r["latent"])
    assert [r["mean_encoder_entropy"] for r in rows] == pytest.approx(own_entropies(vae, x).flatten().tolist(),
                                                                      rel=1e-4)
    np.save(tmp_path / "odd.npy", x.reshape(N, -1)[:, :-2].numpy())
    line = one_line_error(run("collapse", tmp_path / "vae", "--data", tmp_path / "odd.npy"))
    assert f"rows are flat, shape (N, {C * S * S - 2})" in line and f"(N, {C}, H, W)" in line
