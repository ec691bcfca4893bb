"""`LoadOptions`: how to read a checkpoint from the wild, one field per guess it overrides (the CLI's flags)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from entropy_elbo.checkpoints.mlp import OUTPUT_ACTIVATIONS
from entropy_elbo.entropies import LOG_VAR_LIMIT
from entropy_elbo.errors import CheckpointError
from entropy_elbo.models.config import ACTIVATIONS

OPTIMAL = "optimal"


@dataclass
class LoadOptions:
    """How to read a checkpoint from the wild; every field overrides one guess (the CLI's checkpoint flags)."""

    model: str | None = None  # FILE.py:NAME or package.module:NAME, a class or a factory
    model_kwargs: dict[str, object] | str | None = None  # keyword arguments for it (a dict or JSON text)
    decoder_var: str | None = None  # parameter or sub-module holding the decoder variance
    decoder_var_param: str | None = None  # logvar | logstd | std | var | softplus_std | softplus_var
    encoder_var: str | None = None  # parameter or head holding the encoder variance
    encoder_var_param: str | None = None
    decoder_variance: float | str | None = None  # sigma^2 of a never-learned decoder variance, or "optimal"
    activation: str | None = None  # between the Linear layers of a plain MLP state_dict (None: scored on rows)
    output_activation: str | None = None  # after its decoder's last layer (None: scored on rows)
    head_activation: bool | None = None  # the activation also after the encoder heads (None: scored on rows)
    rows: Tensor | None = None  # a few hundred data rows to score the readings the weights leave open
    trust_code: bool = False  # allow TorchScript and arbitrary pickles (runs code from the file)
    checkpoint_key: str | None = None  # dotted path of a state_dict nested in a torch.save dict (model_states.net)
    input_shape: tuple[int, ...] | None = None  # one data row's shape, to probe a module's methods

    def __post_init__(self) -> None:
        if self.activation is not None and self.activation not in ACTIVATIONS:
            raise CheckpointError(f"--activation: {self.activation!r} unknown; use one of {', '.join(ACTIVATIONS)}")
        if self.output_activation is not None and self.output_activation not in OUTPUT_ACTIVATIONS:
            raise CheckpointError(f"--output-activation: {self.output_activation!r} unknown; use one of "
                                  f"{', '.join(OUTPUT_ACTIVATIONS)}")
        if self.model_kwargs is not None and self.model is None:
            raise CheckpointError("--model-kwargs: given without --model; pass --model FILE.py:NAME (the class they "
                                  "build) or drop --model-kwargs")
        if self.decoder_variance == OPTIMAL:
            return
        if isinstance(self.decoder_variance, str):
            try:
                self.decoder_variance = float(self.decoder_variance)
            except ValueError:
                raise CheckpointError(f"--decoder-variance: got {self.decoder_variance!r}; pass a positive sigma^2 "
                                      "or 'optimal'") from None
        if self.decoder_variance is not None and not 0 < self.decoder_variance < float("inf"):
            raise CheckpointError(f"--decoder-variance: got {self.decoder_variance}; it must be a positive sigma^2 "
                                  "or 'optimal'")
        lo, hi = math.exp(-LOG_VAR_LIMIT), math.exp(LOG_VAR_LIMIT)
        if self.decoder_variance is not None and not lo < self.decoder_variance < hi:
            raise CheckpointError(f"--decoder-variance {self.decoder_variance:g}: ln sigma^2 = "
                                  f"{math.log(self.decoder_variance):.1f} is beyond float32's range (|ln sigma^2| must "
                                  f"stay below {LOG_VAR_LIMIT:.1f}); pass a sigma^2 between {lo:.3g} and {hi:.3g}, or "
                                  "'optimal'")

    @property
    def optimal_variance(self) -> bool:
        """--decoder-variance optimal: sigma^2 = sigma^2 r is chosen from the data (estimate.at_optimal_variance)."""
        return self.decoder_variance == OPTIMAL
