"""What the entropy form does not cover: Bernoulli decoders and priors other than N(0, I) or a learned diagonal.

A prior of another kind changes the KL and the prior entropy of every figure, so it is refused outright.
A Bernoulli (BCE) decoder leaves the encoder-only collapse metrics valid, so it is refused where a decoder
likelihood is needed (`estimate`, `compare`): `bernoulli_reason` says why, or None.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from entropy_elbo.checkpoints.introspect import last
from entropy_elbo.errors import CheckpointError

MIXTURE_PRIOR_NAMES = ("pseudo_inputs", "pseudo_input", "prior_means", "prior_mean", "prior_mu", "prior_logits",
                       "mixture_logits", "mixture_weights", "prior_components", "prior_log_vars", "prior_stds")
BCE_WORDS = ("bce", "binary_cross_entropy", "bernoulli", "cross_entropy")
LOSS_KEYS = ("recon_loss", "reconstruction_loss", "loss", "likelihood")
OUTSIDE = "outside the entropy form (Thm. 1 needs a Gaussian decoder)"


def refuse_other_priors(state: dict[str, Tensor]) -> None:
    """A prior other than N(0, I) or VAE-2's learned diagonal (VampPrior pseudo-inputs, a mixture): one line."""
    found = [k for k in state if last(k) in MIXTURE_PRIOR_NAMES]
    if found:
        raise CheckpointError(f"{found[0]!r} of shape {tuple(state[found[0]].shape)}: the prior p(z) is learned "
                              "(a VampPrior or mixture), not N(0, I) or a learned diagonal N(0, A); the entropy ELBO, "
                              "the KL and the collapse criterion would all be computed against the wrong prior, so "
                              "the checkpoint is refused")


def config_items(obj: object) -> Iterator[tuple[str, object]]:
    """Every (key, value) of nested dicts, depth first (Lightning's hyper_parameters may nest `params`); a loop over
    a stack, not recursion, so that no nesting depth in a file reaches Python's recursion limit."""
    stack = [iter(obj.items())] if isinstance(obj, dict) else []
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        yield str(item[0]), item[1]
        if isinstance(item[1], dict):
            stack.append(iter(item[1].items()))


def bernoulli_loss(config: object) -> tuple[str, str] | None:
    """The (key, value) of a config (nested dicts: Lightning's hyper_parameters, pythae's model_config) that names
    a Bernoulli loss (bce, binary_cross_entropy, ...) under a loss key, else None: one rule for every peer."""
    for key, value in config_items(config):
        if key.lower() in LOSS_KEYS and isinstance(value, str) and value.lower().startswith(BCE_WORDS):
            return key, value
    return None


def loss_reason(meta: dict[str, object]) -> str | None:
    """A Bernoulli loss named in a Lightning checkpoint's hyper_parameters, else None (pythae: peers.check_pythae)."""
    found = bernoulli_loss(meta.get("hyper_parameters"))
    if found is None:
        return None
    return f"its hyper_parameters name the loss {found[1]!r} ({found[0]}): a Bernoulli decoder, {OUTSIDE}"


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
    return ("its decoder has no learned variance and a sigmoid output on data in [0, 1]: Bernoulli probabilities "
            f"trained with a BCE loss (as pytorch/examples' vae), {OUTSIDE}; a Gaussian ELBO of it would be a wrong "
            "number. If the sigmoid output is a Gaussian mean, say so with --output-activation sigmoid")
