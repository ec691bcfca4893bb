"""The architecture of a model as data: saved inside every checkpoint so loading rebuilds it from the file."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from entropy_elbo.choices import ACTIVATIONS
from entropy_elbo.errors import ModelError, parse_json


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; `kind` picks the family in `entropy_elbo.models.MODELS`."""

    kind: str
    data_dim: int
    latent_dim: int
    hidden: tuple[int, ...] = (50, 50)
    activation: str = "relu"
    decoder_variance: str = "scalar"  # scalar | per-dim | network | fixed
    init_log_sigma2: float = 0.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data_dim < 1 or self.latent_dim < 1:
            raise ModelError(f"model: data_dim={self.data_dim}, latent_dim={self.latent_dim}; both must be >= 1")
        if self.activation not in ACTIVATIONS:
            raise ModelError(f"model: activation {self.activation!r} unknown; use one of {', '.join(ACTIVATIONS)}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if any(h < 1 for h in self.hidden):
            raise ModelError(f"model: hidden={min(self.hidden)} in {list(self.hidden)}; every layer needs >= 1 unit")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        raw = parse_json(text, "model config")
        if not isinstance(raw, dict):
            raise ModelError(f"model config: expected a JSON object, got {type(raw).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ModelError(f"model config: unknown fields {sorted(unknown)}; was it written by a newer entropy-elbo?")
        for name, value in raw.items():
            kind, words = JSON_TYPES[name]
            if not _is_json(value, kind):
                raise ModelError(f"model config: {name!r} is {json.dumps(value)[:40]} ({type(value).__name__}); "
                                 f"expected {words}")
        return cls(**raw)


JSON_TYPES = {"kind": (str, "text"), "data_dim": (int, "an integer"), "latent_dim": (int, "an integer"),
              "hidden": (list, "a list of integers"), "activation": (str, "text"),
              "decoder_variance": (str, "text"), "init_log_sigma2": (float, "a number"),
              "extra": (dict, "a JSON object")}  # each field of a saved config, as JSON holds it


def _is_json(value: object, kind: type) -> bool:
    """Whether a JSON value has a config field's type (no true for an integer, integers in a list of sizes)."""
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float))
    if kind is list:
        return isinstance(value, list) and all(_is_json(v, int) for v in value)
    return isinstance(value, kind)
