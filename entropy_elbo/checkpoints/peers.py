"""Peer libraries' models, read with the peer's own classes: pythae folders and PyTorch-VAE's implied variance.

pythae models are rebuilt from `model_config.json` with pythae's own class and default networks (no pickle
runs), so every figure comes from its `encoder(x)` / `decoder(z)`. Models whose posterior is not the encoder's
diagonal Gaussian, or whose prior is not N(0, I), are refused in one line that says why.
"""

from __future__ import annotations

import logging

from torch import Tensor, nn

from entropy_elbo.checkpoints.likelihood import bernoulli_loss, config_items
from entropy_elbo.checkpoints.user import build_to_fit
from entropy_elbo.errors import CheckpointError

# pythae models with a diagonal Gaussian encoder and an N(0, I) prior -> the KL weight that sets the implied sigma^2
# (pythae's mse loss is 0.5 ||x - mu(z)||^2 + w KL = w * (negative ELBO at sigma^2 = w), up to a constant)
PYTHAE_GAUSSIAN: dict[str, str | None] = {
    "VAE": None, "BetaVAE": "beta", "DisentangledBetaVAE": None, "BetaTCVAE": None, "FactorVAE": None,
    "IWAE": None, "CIWAE": None, "MIWAE": None, "PIWAE": None, "INFOVAE_MMD": None, "Adversarial_AE": None,
    "MSSSIM_VAE": None, "VAEGAN": None,
}
_KL_CAPACITY = "its loss targets a KL capacity C (a weight times |KL - C|), so it is not the ELBO at any one sigma^2"
_NOT_GAUSSIAN = "not a Gaussian log-likelihood"
# losses that are not the ELBO at any one sigma^2, so no fixed decoder variance is implied: pythae's and PyTorch-VAE's
# model classes in one table (their names differ: pythae's MSSSIM_VAE is PyTorch-VAE's MSSIMVAE)
NOT_AN_ELBO = {
    "MSSSIM_VAE": f"its reconstruction loss is an MS-SSIM similarity, {_NOT_GAUSSIAN}",
    "MSSIMVAE": f"its reconstruction loss is an MS-SSIM similarity, {_NOT_GAUSSIAN}",
    "VAEGAN": f"its reconstruction loss is a distance in a discriminator's features, {_NOT_GAUSSIAN}",
    "LogCoshVAE": f"its reconstruction loss is a log-cosh loss, {_NOT_GAUSSIAN}",
    "DFCVAE": f"its reconstruction loss is a perceptual (VGG feature) distance, {_NOT_GAUSSIAN}",
    "DisentangledBetaVAE": _KL_CAPACITY,
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
    if (found := bernoulli_loss(config)) and name not in _OWN_RECONSTRUCTION:
        raise CheckpointError(f"pythae {name} was trained with {found[0]} {found[1]!r}: a Bernoulli decoder, not a "
                              "Gaussian one, so neither the entropy ELBO nor the Gaussian ELBO applies; refused")


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
    weight = float(config.get(key, 1.0)) if key else 1.0
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


class quiet_logger:
    """Raise a peer library's logger to ERROR while it builds a model (its children inherit the level)."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def __enter__(self) -> None:
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)


# ---------------------------------------------------------------------------------------------- PyTorch-VAE


def lightning_implied_variance(hparams: object, d: int) -> tuple[float | None, str] | None:
    """PyTorch-VAE: loss = MSE(mean over D) + kld_weight * KL implies sigma^2 = D * kld_weight / 2 (x beta)."""
    found = {k: v for k, v in config_items(hparams) if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    weight = next((found[k] for k in ("kld_weight", "M_N") if isinstance(found.get(k), (int, float))), None)
    if weight is None or not weight > 0:
        return None
    other = NOT_AN_ELBO.get(str(found.get("name")))
    if other:
        return None, f"hyper_parameters: PyTorch-VAE {found['name']}: {other}; no sigma^2 is implied"
    beta = found.get("beta")
    loss_type = found.get("loss_type", "B" if beta is not None else None)  # PyTorch-VAE's BetaVAE defaults to 'B'
    if loss_type == "B":
        return None, f"hyper_parameters: kld_weight {weight:g} with loss_type 'B': {_KL_CAPACITY}; no sigma^2 is " \
                     "implied"
    scale = float(beta) if isinstance(beta, (int, float)) and loss_type == "H" else 1.0
    sigma2 = d * float(weight) * scale / 2
    weights = f"kld_weight {weight:g}" + (f" x beta {scale:g}" if scale != 1.0 else "")
    return sigma2, (f"hyper_parameters: {weights}; PyTorch-VAE's loss MSE (mean over D={d}) + {weights} KL is "
                    f"{weights} times the negative ELBO at sigma^2 = D x {weights} / 2 = {sigma2:g}, a fixed decoder "
                    "variance it never learned")
