"""pythae model folders, read with pythae's own classes: `model_config.json`, `model.pt`, maybe pickled networks.

pythae models are rebuilt from `model_config.json` with pythae's own class and default networks (no pickle
runs), so every figure comes from its `encoder(x)` / `decoder(z)`; custom networks pickled beside them load
only with `--trust-code`. Models whose posterior is not the encoder's diagonal Gaussian, whose prior is not
N(0, I), or whose loss is Bernoulli, are refused in one line that says why.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor, nn

from entropy_elbo.checkpoints.likelihood import NOT_AN_ELBO, bernoulli_refusal
from entropy_elbo.checkpoints.raw import RawCheckpoint, trusted_load
from entropy_elbo.checkpoints.source import Built, Source, quiet_logger
from entropy_elbo.checkpoints.torchfiles import read_torch_file
from entropy_elbo.checkpoints.user import build_to_fit, load_strict
from entropy_elbo.errors import CheckpointError, parse_json

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.introspect import Finding
    from entropy_elbo.checkpoints.options import LoadOptions

# pythae models with a diagonal Gaussian encoder and an N(0, I) prior -> the KL weight that sets the implied sigma^2
# (pythae's mse loss is 0.5 ||x - mu(z)||^2 + w KL = w * (negative ELBO at sigma^2 = w), up to a constant)
PYTHAE_GAUSSIAN: dict[str, str | None] = {
    "VAE": None, "BetaVAE": "beta", "DisentangledBetaVAE": None, "BetaTCVAE": None, "FactorVAE": None,
    "IWAE": None, "CIWAE": None, "MIWAE": None, "PIWAE": None, "INFOVAE_MMD": None, "Adversarial_AE": None,
    "MSSSIM_VAE": None, "VAEGAN": None,
}
_OWN_RECONSTRUCTION = ("MSSSIM_VAE", "VAEGAN")  # reconstruction_loss in their config is not used
_DETERMINISTIC = "its encoder is deterministic (no encoder variance), so it is an autoencoder, not a VAE"
PYTHAE_REFUSED: dict[str, str] = {
    "VAMP": "its prior is a learned mixture over pseudo-inputs (VampPrior), not N(0, I)",
    "VAE_IAF": "its posterior is the encoder's Gaussian pushed through an inverse autoregressive flow, "
               "not a diagonal Gaussian",
    "VAE_LinNF": "its posterior is the encoder's Gaussian pushed through planar/radial flows, not a diagonal Gaussian",
    "HVAE": "its posterior is the encoder's Gaussian moved by Hamiltonian dynamics, not a diagonal Gaussian",
    "RHVAE": "its posterior is the encoder's Gaussian moved by Riemannian Hamiltonian dynamics, "
             "not a diagonal Gaussian",
    "SVAE": "its posterior is a von Mises-Fisher distribution on the hypersphere, not a Gaussian",
    "PoincareVAE": "its posterior and prior are Riemannian normals on the Poincare ball, not Gaussians in R^H",
    "AE": _DETERMINISTIC, "RAE_L2": _DETERMINISTIC, "RAE_GP": _DETERMINISTIC, "WAE_MMD": _DETERMINISTIC,
    "VQVAE": "its latents are vector-quantized codes, not Gaussian",
}


def pythae_name(config: dict) -> str:
    """`VAEConfig` -> `VAE`, `INFOVAE_MMD_Config` -> `INFOVAE_MMD`."""
    name = str(config.get("name", ""))
    for suffix in ("_Config", "Config"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_pythae(config: dict) -> None:
    """Refuse, in one line, a pythae model outside the Gaussian entropy form (also under --model)."""
    name = pythae_name(config)
    if name in PYTHAE_REFUSED:
        raise CheckpointError(f"pythae {name} is not a Gaussian VAE with an N(0, I) prior: {PYTHAE_REFUSED[name]}; "
                              "entropy-elbo cannot compute its ELBO and refuses rather than give a wrong number")
    if name not in PYTHAE_GAUSSIAN:
        raise CheckpointError(f"pythae model_config.json names {config.get('name')!r}, a model entropy-elbo does not "
                              f"know; it reads pythae's {', '.join(PYTHAE_GAUSSIAN)}")
    if name not in _OWN_RECONSTRUCTION and (reason := bernoulli_refusal(f"pythae {name}", config)):
        raise CheckpointError(reason)


def custom_route(config: dict) -> str:
    """The --model route for pythae custom networks, named for this config."""
    name, cfg = pythae_name(config), config.get("name")
    return (f"pass --model FILE.py:NAME where NAME() returns pythae's {name}({cfg}(input_dim=..., latent_dim=...), "
            "encoder=YourEncoder(...), decoder=YourDecoder(...)) from your own classes")


def pythae_implied_variance(config: dict) -> tuple[float | None, str]:
    """The fixed decoder variance pythae's loss implies, and the sentence that says why (None: none is implied)."""
    name = pythae_name(config)
    if name in NOT_AN_ELBO:
        return None, f"pythae {name}: {NOT_AN_ELBO[name]}; no fixed decoder variance is implied"
    key = PYTHAE_GAUSSIAN.get(name)
    weight = config.get(key, 1.0) if key else 1.0
    if key and not (isinstance(weight, (int, float)) and not isinstance(weight, bool) and 0 < weight < math.inf):
        return None, (f"pythae {name}'s config gives {key} = {json.dumps(weight)[:40]}: only a positive finite "
                      f"{key} makes its loss a multiple of the negative ELBO, so no fixed decoder variance is implied")
    weight = float(weight)
    if key:
        return weight, (f"pythae {name}'s loss 0.5 ||x - mu(z)||^2 + {key} KL ({key} = {weight:g}) is {key} times "
                        f"the negative ELBO at sigma^2 = {weight:g}, a fixed decoder variance it never learned")
    return 1.0, (f"pythae {name}'s mse loss 0.5 ||x - mu(z)||^2 is -log N(x; mu(z), I) up to a constant: a fixed "
                 "decoder variance sigma^2 = 1 it never learned")


def build_pythae(config: dict, state: dict[str, Tensor], source: str) -> nn.Module | None:
    """pythae's own class with its default networks, loaded strictly with `state`; None when pythae is missing."""
    try:
        import pythae.models as pm
    except ImportError:
        return None
    name = pythae_name(config)
    model_cls, config_cls = getattr(pm, name, None), getattr(pm, str(config.get("name")), None)
    if model_cls is None or config_cls is None:
        return None
    fields = {k: v for k, v in config.items() if k != "name"}

    def build() -> nn.Module:
        with quiet_logger("pythae"):
            try:
                return model_cls(config_cls.from_dict(fields))
            except Exception as err:  # noqa: BLE001 -- pythae validating a config from the wild
                raise CheckpointError(f"{source}: pythae cannot build {name} from model_config.json "
                                      f"({type(err).__name__}: {str(err).strip().splitlines()[0][:160]})") from None

    return build_to_fit(build, state, f"{source}: model.pt", f"its weights do not fit pythae's default {name} "
                        f"networks ({{}}); a model built with custom networks needs them: {custom_route(config)}")




def _pythae_model_folder(path: Path) -> Path:
    """The folder, its final_model/, or the one <Model>_training_<date>/final_model/ of a pipeline's output_dir."""
    if (path / "model_config.json").is_file():
        return path
    runs = sorted(p.parent for p in [*path.glob("final_model/model_config.json"),
                                     *path.glob("*_training_*/final_model/model_config.json")])
    if len(runs) > 1:
        raise CheckpointError(f"{path}: holds {len(runs)} pythae runs ({', '.join(str(r) for r in runs[:4])}); "
                              "pass the final_model folder of the one to read")
    return runs[0] if runs else path


def read_pythae(path: Path, trusted: bool, model_given: bool = False) -> RawCheckpoint:
    """A pythae model folder: model_config.json, model.pt ({"model_state_dict": ...}), maybe pickled nets."""
    path = _pythae_model_folder(path)
    config_file = path / "model_config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: a folder without model_config.json; pass a pythae model folder or a file")
    try:
        text = config_file.read_text()
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{config_file}: cannot be read ({err})") from None
    config = parse_json(text, str(config_file))
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file}: expected a JSON object with name, input_dim and latent_dim")
    try:
        check_pythae(config)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    weights = path / "model.pt"
    if not weights.is_file():
        raise CheckpointError(f"{path}: no model.pt beside model_config.json; the pythae folder is incomplete")
    raw = read_torch_file(weights, trusted)
    raw.fmt = "pythae"
    raw.meta = {"model_config": config}
    pickled = [p for p in ("encoder.pkl", "decoder.pkl") if (path / p).is_file() and not model_given]
    for name in pickled:  # pythae writes custom networks with cloudpickle or pickle
        net = trusted_load(path / name, f"pythae custom network pickled in {name}", trusted,
                           lambda n=name: pickle.loads((path / n).read_bytes()),  # noqa: S301 -- trusted only
                           f", or {custom_route(config)}")
        raw.meta[name[:-4]] = _as_module(net, path / name)
    return raw


def _as_module(net: object, path: Path) -> nn.Module:
    if not isinstance(net, nn.Module):
        raise CheckpointError(f"{path}: holds a {type(net).__name__}, not a torch module")
    return net


class _PythaeNets(nn.Module):
    """pythae's custom encoder and decoder (trusted pickles) under the names its state_dict uses."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder


def custom_networks(raw: RawCheckpoint) -> nn.Module:
    """pythae's pickled custom encoder and decoder, loaded strictly with model.pt's weights."""
    if "encoder" not in raw.meta or "decoder" not in raw.meta:
        raise CheckpointError("pythae folder with only one custom network pickled; pass --model FILE.py:NAME")
    module = _PythaeNets(raw.meta["encoder"], raw.meta["decoder"])
    load_strict(module, raw.state, raw.prefix, "pythae model.pt")
    return module


class PythaeSource(Source):
    """A pythae model folder: its pickled custom networks (trusted), else pythae's own class and default networks;
    without pythae installed, or for a class it lacks, the plain MLP source reads the default networks' shapes."""

    name = "pythae"
    formats = ("pythae",)
    prior_evidence = "the pythae class's KL term is against N(0, I) (models with other priors are refused)"

    def build(self, raw: RawCheckpoint, options: LoadOptions, source: str) -> Built | None:
        config = raw.meta["model_config"]
        if "encoder" in raw.meta or "decoder" in raw.meta:
            return Built(custom_networks(raw), f"pythae {config.get('name')} with custom networks (trusted pickles)",
                         raw.state)
        built = build_pythae(config, raw.state, source)
        if built is None:
            return None
        return Built(built, f"pythae {pythae_name(config)} (pythae's own class and default networks)", raw.state)

    def encoder_variance(self, found: Finding | None) -> Finding | None:
        return None  # the module's own log_covariance, not a hooked layer

    def implied_variance(self, raw: RawCheckpoint, d: int) -> tuple[float | None, str] | None:
        return pythae_implied_variance(raw.meta["model_config"])
