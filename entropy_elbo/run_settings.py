"""A training run's settings as one typed object (`RunSettings`), merged in one order and checked where it is built.

The order, last one wins: the model's defaults (`defaults`), then the preset's settings, then the run's `run.json`
(on resume), then the settings the user gave (flags, or `train_run` keywords). A resumed run keeps what its run.json
holds: a given setting that differs from it is refused, except `epochs`, which may grow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from entropy_elbo.entropies import LOG_VAR_LIMIT
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models import ModelConfig, model_config
from entropy_elbo.presets import preset
from entropy_elbo.train import TrainConfig

# Defaults per model, chosen so that `train` ends near a stationary point on the paper's small data sets.
MODEL_DEFAULTS: dict[str, dict[str, object]] = {
    "linear": {"epochs": 400, "batch_size": 500, "lr": 1e-2, "samples": 10},
    "vae1": {"epochs": 300, "batch_size": 250, "lr": 3e-3, "samples": 10},
    "demo": {"epochs": 100, "batch_size": 250, "lr": 1e-2, "samples": 10},  # ~20 s of CPU: r 0.9993, gap 0.17%
    "vae2": {"epochs": 300, "batch_size": 250, "lr": 3e-3, "samples": 10},
    "vae3": {"epochs": 300, "batch_size": 250, "lr": 3e-3, "samples": 10},
    "conv": {"epochs": 10, "batch_size": 64, "lr": 1e-3, "samples": 1},
}
RUN_KEYS = ("data", "key", "drop_column", "scale", "holdout", "image_size", "latents", "init_log_sigma2", "seed",
            "epochs", "batch_size", "lr", "samples")  # what every run.json's settings hold
WHEN_GIVEN = ("preset",)  # in run.json only when given (None: not given)
SCHEDULE = ("decay_fraction", "variance_lr_factor")  # our schedule (not the paper's): run.json records the values used
RESUMABLE = ("epochs",)  # the only settings a resumed run may change (to extend it)
CASTS = {"str": str, "int": int, "float": float}  # a field's type, from its annotation's first word
KINDS = {str: "text", int: "an integer", float: "a number"}


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """What one training run trains, on what data, and how; fields in the order `train_run` lists them.

    Built by `new` (defaults < preset < given) or `resumed` (defaults < run.json < given, only epochs may change);
    every value is cast to its field's type and checked here, once. `stored()` is run.json's "settings" object.
    """

    model: str  # the model family (not in run.json's settings: its model_config holds it)
    data: str
    key: str | None = None
    drop_column: int | None = None
    scale: str = "none"
    holdout: float = 0.0
    image_size: int = 64
    latents: int = 2
    init_log_sigma2: float = 0.0
    seed: int = 0
    epochs: int
    batch_size: int
    lr: float
    samples: int
    crop: int | None = None
    rows: int | None = None
    hidden: tuple[int, ...] | None = None  # MLP layer sizes (conv: channels per layer); None: the model's own
    activation: str = "relu"
    preset: str | None = None
    decay_fraction: float | None = None  # None: TrainConfig's default (set in __post_init__, so always a number)
    variance_lr_factor: float | None = None  # None: TrainConfig's default (set in __post_init__)

    def __post_init__(self) -> None:
        for f in fields(self):
            value, cast = getattr(self, f.name), CASTS.get(f.type.split(" ")[0])
            if cast is not None and value is not None and type(value) is not cast:
                object.__setattr__(self, f.name, _cast(f.name, value, cast))
        if self.hidden is not None:
            object.__setattr__(self, "hidden", _sizes(self.hidden))
        for name in SCHEDULE:  # our schedule's values, written to run.json whether given or not
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(TrainConfig, name))
        if not abs(self.init_log_sigma2) < LOG_VAR_LIMIT:
            raise EntropyElboError(f"--init-log-sigma2 {self.init_log_sigma2}: exp of it is 0 or infinite in float32; "
                                   f"pass a value in (-{LOG_VAR_LIMIT:.1f}, {LOG_VAR_LIMIT:.1f})")
        self.training  # noqa: B018 -- TrainConfig checks epochs, batch size, lr, samples and the schedule

    @classmethod
    def new(cls, model: str, given: dict[str, object]) -> RunSettings:
        """A new run's settings: the model's defaults < the preset < the settings given."""
        values = defaults(model)
        name = given.get("preset")
        if name:
            chosen = preset(str(name))
            values.update({k: v for k, v in chosen.items() if k not in ("model", "note")})
            if chosen.get("note") and "data" not in given and chosen.get("data") is None:
                raise EntropyElboError(f"--preset {name}: {chosen['note']}")
        values.update(given)
        if values["data"] is None:
            raise EntropyElboError("train: pass --data NAME_OR_FILE (a synthetic set, a data file or an image folder)")
        return cls(model=model, **values)

    @classmethod
    def resumed(cls, stored: dict[str, object], model: str | None, given: dict[str, object], path: Path,
                trained: int) -> RunSettings:
        """A resumed run's settings: its model and run.json's settings (over the defaults); a given setting that
        differs is refused, except epochs, which may not fall below the `trained` epochs."""
        kind = ModelConfig.from_json(str(stored["model_config"])).kind
        if model is not None and kind != model:
            raise EntropyElboError(f"--resume {path}: the run trains {kind}, not {model}; run `train {kind} --resume`")
        kept = dict(stored["settings"])  # type: ignore[arg-type]
        values = {**defaults(kind), **{k: v for k, v in kept.items() if k in SETTINGS}}
        try:
            _json_types(values)
            cls(model=kind, **values)  # run.json's own settings, each checked as a flag's would be
        except EntropyElboError as err:
            raise EntropyElboError(f"{path}: run.json's settings hold a bad value ({str(err).lstrip('-')}); the run "
                                   "folder is damaged or was edited, start a new run") from None
        for key, value in given.items():
            value = list(_sizes(value)) if key == "hidden" else value
            if key not in RESUMABLE and kept.get(key) != value:
                raise EntropyElboError(f"--resume {path}: --{key.replace('_', '-')} {value} differs from the run's "
                                       f"{kept.get(key)}; a resumed run keeps its settings (only --epochs may grow)")
        values.update({k: v for k, v in given.items() if k in RESUMABLE})
        settings = cls(model=kind, **values)
        if settings.epochs < trained:
            raise EntropyElboError(f"--resume {path}: --epochs {settings.epochs} is fewer than the {trained} "
                                   f"epochs already trained; pass --epochs {trained} or more")
        return settings

    @property
    def training(self) -> TrainConfig:
        """The optimizer's settings (the schedule's at TrainConfig's defaults where not given)."""
        schedule = {k: getattr(self, k) for k in SCHEDULE}
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, samples=self.samples,
                           seed=self.seed, **schedule)

    def model_config(self, data_shape: tuple[int, ...]) -> ModelConfig:
        """The new model's config for rows of `data_shape` (conv: `hidden` gives the channels)."""
        options: dict[str, object] = {"activation": self.activation, "init_log_sigma2": self.init_log_sigma2}
        if self.hidden and self.model == "conv":
            options["extra"] = {"channels": list(self.hidden)}
        elif self.hidden:
            options["hidden"] = self.hidden
        return model_config(self.model, data_shape, self.latents, **options)

    def stored(self) -> dict[str, object]:
        """run.json's "settings": every field but the model, those of WHEN_GIVEN only when given, lists for tuples;
        the schedule's two (SCHEDULE) always, at the values the optimizer used (TrainConfig's where not given)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "model" and not (f.name in WHEN_GIVEN and value is None):
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


SETTINGS = tuple(f.name for f in fields(RunSettings) if f.name != "model")  # what `train_run` takes as settings


def defaults(model: str) -> dict[str, object]:
    """The first layer of a run's settings: no data yet, the model's activation and its training defaults."""
    return {"data": None, "activation": "leaky_relu" if model == "conv" else "relu", **MODEL_DEFAULTS[model]}


def _cast(name: str, value: object, cast: type) -> object:
    """`value` as the field's type, or an error that names the setting."""
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise EntropyElboError(f"--{name.replace('_', '-')}: got {value!r}; it must be {KINDS[cast]}") from None


def _json_types(values: dict[str, object]) -> None:
    """Settings read from JSON hold each field's own JSON type: no string for a number, no true for an integer."""
    for f in fields(RunSettings):
        value, cast = values.get(f.name), CASTS.get(f.type.split(" ")[0])
        if value is None or cast is None:
            continue
        fits = isinstance(value, str) if cast is str else (
            not isinstance(value, bool) and isinstance(value, (int, float) if cast is float else int))
        if not fits:
            raise EntropyElboError(f"'{f.name}' is {json.dumps(value)[:40]} ({type(value).__name__}); it must be "
                                   f"{KINDS[cast]}")


def _sizes(value: object) -> tuple[int, ...]:
    """Layer sizes from '50,50' or a sequence of integers."""
    if isinstance(value, str):
        return parse_ints(value, "--hidden")
    return tuple(int(v) for v in value)  # type: ignore[union-attr]


def parse_ints(text: str, flag: str) -> tuple[int, ...]:
    """'50,50' -> (50, 50)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise EntropyElboError(f"{flag}: {text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise EntropyElboError(f"{flag}: {text!r} needs at least one positive size")
    return values
