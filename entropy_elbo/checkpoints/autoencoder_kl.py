"""diffusers `AutoencoderKL` (the Stable Diffusion VAE family), built with diffusers' own class (extra `[diffusers]`).

A `save_pretrained` folder (`config.json` + `diffusion_pytorch_model.safetensors`) or a single safetensors file in
diffusers' key names or the original (CompVis / LDM) ones, renamed by diffusers' own converter (its config read from
a `config.json` beside it, else from the weights' shapes). Every figure
comes from `encode(x).latent_dist` (mean and log-variance per latent channel and position, flattened to H =
channels x h x w latents) and `decode(z).sample`. The decoder variance is fixed: only the Monte Carlo ELBO at a
stated or optimal sigma^2 applies. Images are (N, C, H, W) arrays scaled to [-1, 1], as diffusers expects.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor, nn

from entropy_elbo.checkpoints.adapters import ModuleAdapter, ModulePlan
from entropy_elbo.checkpoints.introspect import ENC_OVERRIDE, Finding, Introspection, decoder_finding
from entropy_elbo.checkpoints.model_inputs import reshaped_note, square_image
from entropy_elbo.checkpoints.raw import RawCheckpoint
from entropy_elbo.checkpoints.source import Built, Source, Wrapped, quiet_logger, wrap_module_plan
from entropy_elbo.checkpoints.torchfiles import read_safetensors
from entropy_elbo.checkpoints.user import build_to_fit
from entropy_elbo.errors import CheckpointError, ModelError, parse_json

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.options import LoadOptions

WEIGHTS = "diffusion_pytorch_model.safetensors"
AUTOENCODER_KL_DECODER = ("diffusers AutoencoderKL's decoder returns an image and no variance: it is trained with "
                          "a reconstruction loss (in Stable Diffusion L1 + perceptual + adversarial), which implies "
                          "no Gaussian sigma^2; the entropy form does not hold")
RANGE_SLACK = 1e-3  # pixels may sit a rounding error outside [-1, 1]


def folder_config(folder: Path) -> dict | None:
    """The AutoencoderKL config.json in `folder`, or None when there is none (or it names another class)."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        text = path.read_text()
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot be read ({err})") from None
    config = parse_json(text, str(path))
    if not isinstance(config, dict) or config.get("_class_name") != "AutoencoderKL":
        other = config.get("_class_name") if isinstance(config, dict) else None
        if isinstance(other, str) and other:
            raise CheckpointError(f"{path}: a diffusers {other}, not an AutoencoderKL: {other_class_reason(other)}")
        return None
    return config


OTHER_CLASSES = {  # diffusers autoencoders that are not read, and why
    "AutoencoderTiny": "its encoder is deterministic (TAESD: no encoder variance), so it is no VAE posterior",
    "VQModel": "its latents are vector-quantized codes (a VQ-VAE: no Gaussian encoder variance)",
    "AutoencoderOobleck": "an audio VAE of another layout (Oobleck: its variance is a softplus scale per channel "
                          "over time), not this reader's layout",
    "AutoencoderKLTemporalDecoder": "a video VAE whose decoder is temporal, not this reader's layout",
}


def other_class_reason(name: str) -> str:
    """Why a diffusers autoencoder class other than AutoencoderKL is not read."""
    return OTHER_CLASSES.get(name, "only AutoencoderKL (a diagonal Gaussian encoder) is read from a diffusers "
                             "folder; pass --model FILE.py:NAME with a class whose encode() returns (mean, "
                             "log-variance)")


def is_autoencoder_kl(state: dict[str, Tensor]) -> bool:
    """diffusers' AutoencoderKL key names, or the original (LDM) names of the same VAE."""
    return ldm_prefix(state) is not None or all(k in state for k in (
        "encoder.conv_in.weight", "encoder.conv_out.weight", "decoder.conv_in.weight", "decoder.conv_out.weight",
        "encoder.down_blocks.0.resnets.0.conv1.weight"))


LDM_FIRST = "encoder.down.0.block.0.conv1.weight"  # the original (CompVis / LDM) key names of the same model


def ldm_prefix(state: dict[str, Tensor]) -> str | None:
    """The prefix of an original-format (LDM) VAE's keys (`first_stage_model.` in a whole SD file), or None."""
    return next((k[: -len(LDM_FIRST)] for k in state if k.endswith(LDM_FIRST)), None)


def config_from_shapes(state: dict[str, Tensor]) -> dict:
    """An AutoencoderKL config that fits the weights; norm_num_groups is not in them (diffusers' default 32)."""
    ldm = ldm_prefix(state)
    p = ldm or ""
    block = (lambda i, j: f"{p}encoder.down.{i}.block.{j}.conv1.weight") if ldm is not None else \
        (lambda i, j: f"encoder.down_blocks.{i}.resnets.{j}.conv1.weight")
    blocks = []
    while block(len(blocks), 0) in state:
        blocks.append(int(state[block(len(blocks), 0)].shape[0]))
    layers = 0
    while block(0, layers) in state:
        layers += 1
    state = {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
    groups = 32
    if any(c % groups for c in blocks):
        raise CheckpointError(f"an AutoencoderKL with block channels {blocks}: its GroupNorm group count is not in "
                              "the weights and diffusers' default 32 does not divide them; put the model's "
                              "config.json beside the file")
    return {"in_channels": int(state["encoder.conv_in.weight"].shape[1]),
            "out_channels": int(state["decoder.conv_out.weight"].shape[0]),
            "latent_channels": int(state["decoder.conv_in.weight"].shape[1]),
            "block_out_channels": blocks, "layers_per_block": layers, "norm_num_groups": groups,
            "down_block_types": ["DownEncoderBlock2D"] * len(blocks),
            "up_block_types": ["UpDecoderBlock2D"] * len(blocks),
            "use_quant_conv": "quant_conv.weight" in state, "use_post_quant_conv": "post_quant_conv.weight" in state,
            "mid_block_add_attention": any(".mid_block.attentions." in k or ".mid.attn_1." in k for k in state)}


class AutoencoderKLAdapter(nn.Module):
    """encode(x) -> [mean, log-variance] flattened to (B, L*h*w); decode(z) -> image (B, C, H, W)."""

    def __init__(self, vae: nn.Module, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.vae = vae
        self.input_shape = tuple(input_shape)
        blocks = len(vae.config.block_out_channels)
        c, height, width = self.input_shape
        scale = 2 ** (blocks - 1)
        if height % scale or width % scale:
            raise CheckpointError(f"images of {height}x{width} pixels: AutoencoderKL with {blocks} blocks needs sides "
                                  f"divisible by {scale}")
        self.latent_shape = (int(vae.config.latent_channels), height // scale, width // scale)

    def encode(self, x: Tensor) -> list[Tensor]:
        x = x.reshape(-1, *self.input_shape)  # (B, C, H, W)
        lo, hi = float(x.min()), float(x.max())
        if lo < -1 - RANGE_SLACK or hi > 1 + RANGE_SLACK:
            raise ModelError(f"diffusers AutoencoderKL expects pixels scaled to [-1, 1], but the data spans "
                             f"[{lo:.4g}, {hi:.4g}]; rescale it (x / 127.5 - 1 for 8-bit images, 2 x - 1 for [0, 1])")
        dist = self.vae.encode(x).latent_dist
        return [dist.mean.flatten(1), dist.logvar.flatten(1)]  # (B, L*h*w) each

    def decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(z.reshape(-1, *self.latent_shape)).sample  # (B, C, H, W)


def known_plan(module: AutoencoderKLAdapter, encoder: Finding, decoder: Finding, options: LoadOptions) -> Wrapped:
    """AutoencoderKL as a GaussianVAE by its definition: encode() gives [mean, log-variance] of H = L x h x w
    latents, decode() the image (the mean, D = C x H x W values); the flags are checked as for any module's code,
    and nothing is scored: no reading is open."""
    from entropy_elbo.checkpoints.code_readings import read_outputs  # it imports source's neighbours

    c, height, width = module.input_shape
    out = int(module.vae.config.out_channels)
    if out != c:
        raise CheckpointError(f"decode() returned {out * height * width} values per row; expected {c * height * width} "
                              "(the input's size)")
    h = math.prod(module.latent_shape)
    plan = ModulePlan("encode", "decode", encoder, decoder, "fixed", h, c * height * width)
    plan, assumed = read_outputs(module, plan, replace(options, rows=None))  # the flags alone
    return Wrapped(ModuleAdapter(module, plan), plan.h, plan.d, plan.encoder, plan.decoder, [], assumed)


def logvar_finding() -> Finding:
    """Where the encoder variance comes from: diffusers' own latent distribution."""
    return Finding("output", "encode(x).latent_dist.logvar", "logvar", "diffusers' DiagonalGaussianDistribution holds "
                   "the log-variance (clamped to [-30, 20]) per latent channel and position", ENC_OVERRIDE)


def build_autoencoder_kl(config: dict, state: dict[str, Tensor], input_shape: tuple[int, ...] | None,
                         source: str) -> AutoencoderKLAdapter:
    """diffusers' AutoencoderKL from `config`, loaded strictly with `state`, for images of `input_shape`."""
    sides = config_sides(config, source) if input_shape is None else None  # bounded before anything is built
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise CheckpointError(f"{source}: a diffusers AutoencoderKL; reading it needs diffusers: "
                              "pip install 'entropy-elbo[diffusers]'") from None
    if ldm_prefix(state) is not None:  # original-format keys: diffusers' own converter renames them
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
        state = convert_ldm_vae_checkpoint(state, config)
    fields = {k: v for k, v in config.items() if not k.startswith("_")}

    def build() -> nn.Module:
        try:
            with quiet_logger("diffusers"):  # it warns about config keys it ignores: inspect lists what was read
                return AutoencoderKL.from_config(fields)
        except Exception as err:  # noqa: BLE001 -- diffusers validating a config from the wild
            raise CheckpointError(f"{source}: diffusers cannot build AutoencoderKL from its config "
                                  f"({type(err).__name__}: {str(err).strip().splitlines()[0][:160]})") from None

    vae = build_to_fit(build, state, source, "its weights do not fit the AutoencoderKL its config describes ({}); "
                       "put the model's own config.json beside the weights")
    shape = input_shape or (int(vae.config.in_channels), *sides)
    if len(shape) != 3 or shape[0] != vae.config.in_channels:
        raise CheckpointError(f"{source}: AutoencoderKL takes images (N, {vae.config.in_channels}, H, W); the data's "
                              f"rows have shape {tuple(shape)}")
    return AutoencoderKLAdapter(vae.eval(), shape)


PROBE_SIDE = 256  # pixels: without data, the probe image's sides are bounded by this (2048 took 1.6 GB and minutes)


def config_sides(config: dict, source: str) -> tuple[int, int]:
    """The probe image's (height, width) from the config's sample_size (no data given), checked and bounded
    before anything is built from them."""
    size = config.get("sample_size", 32)
    sides = size if isinstance(size, list) and len(size) == 2 else [size, size]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sides):
        raise CheckpointError(f"{source}: config 'sample_size' is {json.dumps(size)[:40]}; expected a positive "
                              "integer or [height, width]; fix config.json, or pass --data with images")
    if max(sides) > PROBE_SIDE:
        raise CheckpointError(f"{source}: config 'sample_size' {json.dumps(size)} asks for a probe image of "
                              f"{sides[0]}x{sides[1]} pixels, more than the {PROBE_SIDE}x{PROBE_SIDE} a probe may take "
                              "without data; pass --data with images of the size the model works on")
    return int(sides[0]), int(sides[1])


def read_autoencoder_kl(path: Path, config: dict | None, raw: RawCheckpoint | None = None) -> RawCheckpoint:
    """diffusers AutoencoderKL weights, with the config saved beside them or one read from their shapes."""
    if raw is None:
        if not path.is_file():
            raise CheckpointError(f"{path.parent}: a diffusers AutoencoderKL folder without {WEIGHTS}; entropy-elbo "
                                  "reads only safetensors weights (save_pretrained's default)")
        raw = read_safetensors(path)
    raw.fmt = "diffusers"
    raw.meta["config_from"] = f"{path.parent / 'config.json'}" if config is not None else "the weights' shapes"
    try:
        raw.meta["config"] = config if config is not None else config_from_shapes(raw.state)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return raw


def autoencoder_kl_assumptions(intro: Introspection, module: AutoencoderKLAdapter, config_from: str) -> None:
    """Spatial latents, the config's source and the pixel range diffusers expects."""
    intro.latent_shape = list(module.latent_shape)
    c, h, w = module.latent_shape
    intro.notes.append(f"spatial latents: {c} channels x {h} x {w} positions = H {c * h * w}, from "
                       "encode(x).latent_dist (mean, logvar); collapse also reports each channel")
    intro.assume(f"architecture from {config_from}", "diffusers builds AutoencoderKL from its config; "
                 + ("norm_num_groups 32 is diffusers' default, not in the weights" if "shapes" in config_from
                    else "saved by save_pretrained"), "a config.json beside the weights")
    intro.assume("pixels scaled to [-1, 1]", "diffusers' AutoencoderKL is trained on [-1, 1] images; data outside "
                 "that range is refused", "rescale the data")


class DiffusersSource(Source):
    """diffusers' AutoencoderKL: a save_pretrained folder or a safetensors file in its (or LDM's) key names."""

    name = "diffusers AutoencoderKL"
    formats = ("diffusers",)
    prior_evidence = "AutoencoderKL's KL term is against N(0, I)"

    def build(self, raw: RawCheckpoint, options: LoadOptions, source: str) -> Built:
        shape, notes, channels = options.input_shape, [], raw.meta["config"].get("in_channels", 3)
        if shape is not None and len(shape) == 1 and isinstance(channels, int) and channels > 0:  # flat rows
            taker = "diffusers AutoencoderKL (its conv_in)"  # images when in_channels and D fix the side
            shape, why = square_image(channels, int(shape[0]), taker)
            notes.append(reshaped_note(math.prod(shape), taker, shape, why))
        module = build_autoencoder_kl(raw.meta["config"], raw.state, shape, source)
        return Built(module, "diffusers AutoencoderKL (diffusers' own class)", raw.state, notes=notes)

    def wrap(self, built: Built, raw: RawCheckpoint, options: LoadOptions, source: str, encoder: Finding | None,
             prior: Finding | None, probe: Tensor | None) -> Wrapped:
        """The plan diffusers' class defines, without running the model (a probe of SD's VAE on two random images
        was 80% of collapse's CPU); a flag that names another encoder output or decoder variance is probed."""
        decoder = decoder_finding(built.state, options, None, None)
        if encoder is None or encoder.name != logvar_finding().name or decoder.kind != "fixed":
            return wrap_module_plan(built, raw, options, source, encoder, probe)
        wrapped = known_plan(built.module, encoder, decoder, options)
        wrapped.notes[:0] = built.notes  # flat rows reshaped to images, said as on the probed path
        return wrapped

    def encoder_variance(self, found: Finding | None) -> Finding | None:
        return logvar_finding()  # the latent distribution's own log-variance, not a hooked layer

    def implied_variance(self, raw: RawCheckpoint, d: int) -> tuple[float | None, str] | None:
        return None, AUTOENCODER_KL_DECODER

    def assume(self, intro: Introspection, built: Built, raw: RawCheckpoint) -> None:
        autoencoder_kl_assumptions(intro, built.module, str(raw.meta["config_from"]))
