"""What a model's own code returns, read by its meaning (issue #22).

`torch.distributions` objects say what they are: a `Normal`, an `Independent(Normal)` or a diagonal
`MultivariateNormal` is read as its mean and its variance (`.variance`, whatever the constructor was given: a
scale, a log-scale through exp, a softplus); anything else (Bernoulli, ContinuousBernoulli, Laplace, StudentT,
a mixture) is not a Gaussian and is refused by its class's name. An encoder returning three (B, H) tensors
(z, mean, variance: the sample first, as many tutorials do) is told apart by calling it twice: the sample is
the output that changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import Tensor, nn

from entropy_elbo.checkpoints.introspect import ENCODER_MEAN_HEADS, ENCODER_VAR_HEADS
from entropy_elbo.errors import CheckpointError

OUTSIDE = "outside the entropy form (Thm. 1 needs a Gaussian encoder and decoder)"


class NotGaussian(CheckpointError):
    """A method returned a distribution that is not a diagonal Gaussian; the message names its class."""


def is_distribution(out: object) -> bool:
    return isinstance(out, torch.distributions.Distribution)


def gaussian_parts(dist: object, via: str) -> list[Tensor]:
    """A diagonal Gaussian distribution -> [mean, log-variance]; any other distribution: NotGaussian naming it."""
    name = type(dist).__name__
    inner = dist
    while isinstance(inner, torch.distributions.Independent):
        inner = inner.base_dist
    if isinstance(inner, torch.distributions.Normal):
        return [inner.loc, inner.variance.log()]
    if isinstance(inner, torch.distributions.MultivariateNormal):
        cov = inner.covariance_matrix
        diag = torch.diagonal(cov, dim1=-2, dim2=-1)
        if torch.equal(cov, torch.diag_embed(diag)):
            return [inner.loc, diag.log()]
        raise NotGaussian(f"{via}() returned a MultivariateNormal with a full covariance (off-diagonal terms): the "
                          f"entropy form reads a diagonal Gaussian; {OUTSIDE}")
    what = type(inner).__name__ if inner is not dist else name
    shown = f"{name}({what})" if inner is not dist else name
    raise NotGaussian(f"{via}() returned a {shown} distribution, not a Gaussian (Normal, Independent(Normal) or a "
                      f"diagonal MultivariateNormal): {OUTSIDE}; refused")


def expand(out: object, via: str) -> object:
    """`out` with every distribution in it (itself, or items of a tuple/list) replaced by [mean, log-variance]."""
    if is_distribution(out):
        return tuple(gaussian_parts(out, via))
    if isinstance(out, (tuple, list)) and any(is_distribution(o) for o in out):
        flat: list[object] = []
        for o in out:
            flat.extend(gaussian_parts(o, via) if is_distribution(o) else [o])
        return tuple(flat)
    return out


def returns_distribution(out: object) -> bool:
    """Whether a method's output is, or holds, a distribution object (then its variance is exact, not a guess)."""
    return is_distribution(out) or (isinstance(out, (tuple, list)) and any(is_distribution(o) for o in out))


def sample_first(call: Callable[[], list[Tensor]], first: list[Tensor]) -> int | None:
    """Three or more same-shaped (B, H) outputs: the index of the sample among the first three (the output that
    changes between two calls), 0 when output 0 equals output 1 (z = mean in eval mode), else None."""
    if len(first) < 3 or not all(t.shape == first[0].shape for t in first[:3]):
        return None
    again = call()
    changed = [i for i in range(3) if i < len(again) and not torch.equal(first[i], again[i])]
    if len(changed) == 1:
        return changed[0]
    if torch.equal(first[0], first[1]):
        return 0
    return None


def ambiguous_three(via: str) -> CheckpointError:
    return CheckpointError(f"{via}() returns three tensors of the same shape and none changes between two calls: "
                           f"which is the sample, the mean and the variance cannot be told; pass --encoder-var "
                           f"'{via}()[2]' for (z, mean, variance) or --encoder-var '{via}()[1]' for (mean, variance, "
                           "...): the mean is the output just before the variance")


def output_index(name: str | None) -> int | None:
    """k of --encoder-var 'encode()[k]' (or 'encoder()[k]'): the variance is the method's output k."""
    m = re.fullmatch(r"(?:encode|encoder)\(\)\[(\d)\]", name or "")
    return int(m.group(1)) if m else None


def sibling_heads(module: nn.Module) -> tuple[str, str] | None:
    """(mean head, variance head) that sit beside an `encoder` sub-module of a class with no encode() (the
    lightning-bolts VAE: encoder, fc_mu, fc_var, decoder as siblings): one of each by name, else None."""
    if hasattr(module, "encode") or not isinstance(getattr(module, "encoder", None), nn.Module):
        return None
    names = [n for n, _ in module.named_children()]
    means = [n for n in names if n in ENCODER_MEAN_HEADS]
    variances = [n for n in names if n in ENCODER_VAR_HEADS]
    return (means[0], variances[0]) if len(means) == 1 and len(variances) == 1 else None


def through_heads(module: nn.Module, heads: tuple[str, str]) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """encoder(x) through the sibling heads: (mean, variance head's output)."""
    mean_head, var_head = (module.get_submodule(n) for n in heads)

    def encode(x: Tensor) -> tuple[Tensor, Tensor]:
        feats = module.encoder(x)
        return mean_head(feats), var_head(feats)

    return encode
