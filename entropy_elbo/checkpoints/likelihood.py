"""The decoder likelihood a checkpoint was trained with (Gaussian, Bernoulli, other), decided here for every source,
and the priors the entropy form does not cover.

A prior other than N(0, I) or a learned diagonal changes the KL and the prior entropy of every figure, so it is
refused outright. A Bernoulli (BCE) decoder leaves the encoder-only collapse metrics valid, so it is refused where
a decoder likelihood is needed (`estimate`, `compare`): `likelihood_refusal` says why, or None (pythae refuses a
BCE config when its folder is read: `bernoulli_refusal`). Another loss (MS-SSIM, perceptual, a KL capacity) is no
ELBO at any sigma^2: `NOT_AN_ELBO` says why, and no fixed decoder variance is implied.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from entropy_elbo.checkpoints.introspect import Finding, has_decoder_variance, last
from entropy_elbo.errors import CheckpointError, ModelError
from entropy_elbo.walk import nested_items

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.options import LoadOptions
    from entropy_elbo.checkpoints.raw import RawCheckpoint

MIXTURE_PRIOR_NAMES = ("pseudo_inputs", "pseudo_input", "prior_means", "prior_mean", "prior_mu", "prior_logits",
                       "mixture_logits", "mixture_weights", "prior_components", "prior_log_vars", "prior_stds")
BCE_WORDS = ("bce", "binary_cross_entropy", "bernoulli", "cross_entropy")
LAPLACE_WORDS = ("l1", "laplace", "mae", "abs")  # a Laplace decoder: |x - mu| / b, its loss an L1 distance
# what a model class's own source names, read as text (never run): the likelihood its decoder stands for
CODE_LIKELIHOODS = (("Laplace (an L1 loss)", ("Laplace(", "l1_loss", "L1Loss")),
                    ("Bernoulli (a BCE loss)", ("binary_cross_entropy", "BCELoss", "BCEWithLogits", "Bernoulli(")))
LOSS_KEYS = ("recon_loss", "reconstruction_loss", "loss", "likelihood")
OUTSIDE = "outside the entropy form (Thm. 1 needs a Gaussian decoder)"
KL_CAPACITY = "its loss targets a KL capacity C (a weight times |KL - C|), so it is not the ELBO at any one sigma^2"
NOT_GAUSSIAN = "not a Gaussian log-likelihood"
# losses that are not the ELBO at any one sigma^2, so no fixed decoder variance is implied: pythae's and PyTorch-VAE's
# model classes in one table (their names differ: pythae's MSSSIM_VAE is PyTorch-VAE's MSSIMVAE)
NOT_AN_ELBO = {
    "MSSSIM_VAE": f"its reconstruction loss is an MS-SSIM similarity, {NOT_GAUSSIAN}",
    "MSSIMVAE": f"its reconstruction loss is an MS-SSIM similarity, {NOT_GAUSSIAN}",
    "VAEGAN": f"its reconstruction loss is a distance in a discriminator's features, {NOT_GAUSSIAN}",
    "LogCoshVAE": f"its reconstruction loss is a log-cosh loss, {NOT_GAUSSIAN}",
    "DFCVAE": f"its reconstruction loss is a perceptual (VGG feature) distance, {NOT_GAUSSIAN}",
    "DisentangledBetaVAE": KL_CAPACITY,
}


def refuse_other_priors(state: dict[str, Tensor]) -> None:
    """A prior other than N(0, I) or VAE-2's learned diagonal (VampPrior pseudo-inputs, a mixture): one line."""
    found = [k for k in state if last(k) in MIXTURE_PRIOR_NAMES]
    if found:
        raise CheckpointError(f"{found[0]!r} of shape {tuple(state[found[0]].shape)}: the prior p(z) is learned "
                              "(a VampPrior or mixture), not N(0, I) or a learned diagonal N(0, A); the entropy ELBO, "
                              "the KL and the collapse criterion would all be computed against the wrong prior, so "
                              "the checkpoint is refused")


def config_items(obj: object, where: str = "config") -> Iterator[tuple[str, object]]:
    """Every (key, value) of nested dicts, depth first (Lightning's hyper_parameters may nest `params`), walked
    with `walk.nested_items`' bounds: each dict once, no cycle, no depth or size beyond any real config."""
    return nested_items(obj, where, CheckpointError)


def bernoulli_loss(config: object, where: str = "config") -> tuple[str, str] | None:
    """The (key, value) of a config (nested dicts: Lightning's hyper_parameters, pythae's model_config) that names
    a Bernoulli loss (bce, binary_cross_entropy, ...) under a loss key, else None: one rule for every peer."""
    for key, value in config_items(config, where):
        if key.lower() in LOSS_KEYS and isinstance(value, str) and value.lower().startswith((*BCE_WORDS,
                                                                                             *LAPLACE_WORDS)):
            return key, value
    return None


def loss_reason(meta: dict[str, object]) -> str | None:
    """A Bernoulli loss named in a Lightning checkpoint's hyper_parameters, else None (pythae: bernoulli_refusal)."""
    found = bernoulli_loss(meta.get("hyper_parameters"), "hyper_parameters")
    if found is None:
        return None
    what = "a Laplace decoder" if found[1].lower().startswith(LAPLACE_WORDS) else "a Bernoulli decoder"
    return f"its hyper_parameters name the loss {found[1]!r} ({found[0]}): {what}, {OUTSIDE}"


@torch.no_grad()
def sigmoid_reason(model: object, rows: Tensor, output: str | None) -> str | None:
    """A decoder with no learned variance whose means all lie in [0, 1] (at least 100 of them) on data in [0, 1]:
    a sigmoid giving Bernoulli probabilities (pytorch/examples' vae), else None. `output` is the MLP reading's output
    activation when read from shapes (then that decides), None for a model with its own methods."""
    x = rows.float()
    if x.numel() == 0 or float(x.min()) < 0 or float(x.max()) > 1:
        return None
    if output is not None:
        sigmoid = output == "sigmoid"
    else:  # a Tanh output (PyTorch-VAE) on [0, 1] data can stay in [0, 1] too: only a model without one counts
        mu = model.decode(model.encode(x)[0])[0]
        tanh = isinstance(model, torch.nn.Module) and any(isinstance(m, torch.nn.Tanh) for m in model.modules())
        sigmoid = not tanh and bool(((mu >= 0) & (mu <= 1)).all()) and mu.numel() >= 100  # float32 reaches 1.0
    if not sigmoid:
        return None
    named = code_likelihood(model)
    if named is not None and not named.startswith("Bernoulli"):
        return (f"its decoder has no learned variance, a sigmoid output on data in [0, 1], and its class's code names "
                f"a {named} likelihood: {OUTSIDE}; a Gaussian ELBO of it would be a wrong number. If the output is "
                "a Gaussian mean, say so with --output-activation sigmoid and --decoder-variance VALUE|optimal")
    return ("its decoder has no learned variance and a sigmoid output on data in [0, 1]: Bernoulli probabilities "
            f"trained with a BCE loss (as pytorch/examples' vae), {OUTSIDE}; a Gaussian ELBO of it would be a wrong "
            "number. If the sigmoid output is a Gaussian mean, say so with --output-activation sigmoid")


def code_likelihood(model: object) -> str | None:
    """The non-Gaussian likelihood a model class's own source names (read as text, never run), else None."""
    import inspect

    module = getattr(model, "module", model)
    try:
        text = inspect.getsource(type(module))
    except (OSError, TypeError):
        return None
    return next((name for name, words in CODE_LIKELIHOODS if any(w in text for w in words)), None)


def bernoulli_refusal(what: str, config: dict) -> str | None:
    """Why a peer model whose config names a Bernoulli loss is refused outright (pythae), else None."""
    found = bernoulli_loss(config, what)
    if found is None:
        return None
    kind = "a Laplace decoder" if found[1].lower().startswith(LAPLACE_WORDS) else "a Bernoulli decoder"
    return (f"{what} was trained with {found[0]} {found[1]!r}: {kind}, not a Gaussian one, so neither "
            "the entropy ELBO nor the Gaussian ELBO applies; refused")


def likelihood_refusal(raw: RawCheckpoint, state: dict[str, Tensor], model: object, decoder: Finding, d: int,
                       options: LoadOptions, output: str | None) -> str | None:
    """Why no Gaussian decoder likelihood applies to a model read from `raw` (a Bernoulli decoder), else None:
    the loss its hyper_parameters name, or, for a decoder with no learned variance, a sigmoid output on the
    data's rows. `output`: the output activation read from shapes (None: the model's own methods decide)."""
    reason = loss_reason(raw.meta)
    rows = options.rows
    if (reason is not None or raw.fmt == "pythae" or decoder.kind != "fixed" or has_decoder_variance(state)
            or rows is None or rows[0].numel() != d or options.output_activation == "sigmoid"):
        return reason
    try:
        return sigmoid_reason(model, rows, output)
    except (RuntimeError, ValueError, CheckpointError, ModelError):
        return None  # the model cannot run on these rows: the estimate's own checks say why


def bernoulli_undecided(candidates: list, rows: Tensor, decoder_kind: str, pythae: bool,
                        output_flag: str | None) -> bool:
    """Whether readings that fit about equally well all have a sigmoid output on data in [0, 1] with no learned
    decoder variance: a Bernoulli decoder, left undecided and refused as such where a likelihood is needed."""
    return not (pythae or output_flag or decoder_kind != "fixed" or float(rows.min()) < 0 or float(rows.max()) > 1
                or any(c.output != "sigmoid" for c in candidates))


def declared_gaussian(reason: str | None) -> str | None:
    """The warning when --output-activation sigmoid lifted a likelihood refusal: the likelihood is then Gaussian by
    the flag alone, which neither r nor a_h can check."""
    if reason is None:
        return None
    return (f"decoder likelihood Gaussian by --output-activation sigmoid alone: without the flag it is refused ("
            f"{reason.split(': ')[0]}: a Bernoulli or other non-Gaussian decoder); if the model was trained with a "
            "non-Gaussian loss (BCE), the ELBO here is not its ELBO, and r and a_h cannot tell (they check the "
            "variances, not the likelihood)")
