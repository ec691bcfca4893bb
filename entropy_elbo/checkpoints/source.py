"""The interface every checkpoint source meets, and the steps shared by every source that builds a module.

A source is one place checkpoints come from (a PyTorch or Lightning file, a pythae folder, diffusers'
AutoencoderKL, PyTorch-VAE's layout, the user's class, a plain MLP read from shapes, our own format). It says
which raw formats it reads (`formats`), whether it builds the module for a raw checkpoint (`recognise`,
`build`), how that module becomes a GaussianVAE (`wrap`), the encoder output its library defines, the decoder
variance its training loss implies, and what it assumes. `sources.SOURCES` is the table that picks one.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from entropy_elbo.checkpoints.adapters import ModuleAdapter, ModulePlan, plan_module
from entropy_elbo.checkpoints.introspect import Finding, Introspection, decoder_finding, layer_names
from entropy_elbo.checkpoints.model_inputs import as_model_input
from entropy_elbo.checkpoints.raw import RawCheckpoint
from entropy_elbo.checkpoints.readings import Reading, choose
from entropy_elbo.checkpoints.traced import keyed_param
from entropy_elbo.errors import CheckpointError
from entropy_elbo.limits import check_memory

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.options import LoadOptions


@dataclass
class Built:
    """The module a source built (or found) for a raw checkpoint; `module` None: read from the weights' shapes."""

    module: nn.Module | None
    kind: str  # what Introspection.model_kind says
    state: dict[str, Tensor]  # the tensors the findings read (a --model class: its own state_dict)
    own_code: bool = False  # the user's or the file's own code: its parameters' requires_grad flags count
    notes: list[str] = field(default_factory=list)


@dataclass
class Wrapped:
    """A GaussianVAE made from a raw checkpoint, with the findings and notes its Introspection reports."""

    model: nn.Module
    h: int
    d: int
    encoder: Finding
    decoder: Finding
    notes: list[str] = field(default_factory=list)
    assumed: list[tuple[str, str, str]] = field(default_factory=list)  # (what, evidence, override)
    unresolved: str | None = None  # a reading the data could not decide (readings.AmbiguousReading)
    output: str | None = None  # the output activation read from shapes (None: the model's own methods decide)
    refusal: str | None = None  # the model's code returns a non-Gaussian decoder distribution (named)


class Source:
    """One place checkpoints come from; the defaults suit a source that builds a module with its own methods."""

    name = ""
    formats: tuple[str, ...] = ()  # the raw formats this source reads: each of raw.RAW_FORMATS has exactly one
    prior_evidence: str | None = None  # why the prior is N(0, I), when the source's library says so

    def recognise(self, raw: RawCheckpoint, options: LoadOptions) -> bool:
        """Whether this source builds the module for `raw` (tried in the table's order)."""
        return raw.fmt in self.formats

    def build(self, raw: RawCheckpoint, options: LoadOptions, source: str) -> Built | None:
        """The module for `raw`, or None when it turns out not to be this source's after all."""
        return None

    def wrap(self, built: Built, raw: RawCheckpoint, options: LoadOptions, source: str, encoder: Finding | None,
             prior: Finding | None, probe: Tensor | None) -> Wrapped:
        """The built module as a GaussianVAE, run once on `probe` rows to find where its variances come out."""
        return wrap_module_plan(built, raw, options, source, encoder, probe)

    def encoder_variance(self, found: Finding | None) -> Finding | None:
        """The encoder variance of a module this source's library built: by default the one found by name."""
        return found

    def implied_variance(self, raw: RawCheckpoint, d: int) -> tuple[float | None, str] | None:
        """The fixed decoder variance this source's training loss implies, with the sentence that says why."""
        return None

    def assume(self, intro: Introspection, built: Built, raw: RawCheckpoint) -> None:
        """Notes and assumptions of the module this source built (after the Introspection is made)."""


def wrap_module_plan(built: Built, raw: RawCheckpoint, options: LoadOptions, source: str, encoder: Finding | None,
                     probe: Tensor | None) -> Wrapped:
    """A module with its own encode/decode as a ModuleAdapter, its plan decided on `probe` (by default random
    rows of its input shape)."""
    module, state = built.module, built.state
    decoder = decoder_finding(state, options, None, module if built.own_code else None)
    shape = getattr(module, "input_shape", None) if options.input_shape is None else None
    if probe is None:
        shape = tuple(shape or probe_shape(raw, options))
        check_memory(8 * math.prod(shape), f"{source}: a probe of 2 inputs of shape {shape}",
                     "pass --data whose rows are the model's real inputs", CheckpointError)
        probe = torch.rand(2, *shape)
    module.eval()
    probe, image, note = as_model_input(module, probe)
    plan = plan_module(module, state, encoder, decoder, probe,
                       explicit=options.decoder_var is not None or options.decoder_variance is not None)
    plan = keyed_param(replace(plan, image_shape=image), options.encoder_var_param)
    assumed: list[tuple[str, str, str]] = []
    if plan.split:
        plan = score_split(module, plan, options)
    else:
        from entropy_elbo.checkpoints.code_readings import read_outputs  # it imports this module's neighbours

        plan, assumed = read_outputs(module, plan, options)
    model: nn.Module = ModuleAdapter(module, plan)
    if plan.decoder.kind in ("scalar", "per-dim") and isinstance(plan.decoder.value, list) \
            and len(plan.decoder.value) != plan.d:
        raise CheckpointError(f"decoder variance {plan.decoder.name!r} has {len(plan.decoder.value)} values but "
                              f"D={plan.d}; pick another with --decoder-var NAME")
    notes = [*built.notes, *(n for n in (note, plan.traced) if n)]
    return Wrapped(model, plan.h, plan.d, plan.encoder, plan.decoder, notes, assumed, refusal=plan.refusal)


def probe_shape(raw: RawCheckpoint, options: LoadOptions) -> tuple[int, ...]:
    """One input row's shape: the flag, a peer config's input_dim, or the first Linear layer's width."""
    if options.input_shape is not None:
        return tuple(options.input_shape)
    config = raw.meta.get("model_config")
    if isinstance(config, dict) and config.get("input_dim"):
        dim = config["input_dim"]
        return tuple(dim) if isinstance(dim, (list, tuple)) else (int(dim),)
    for name in layer_names(raw.state):
        w = raw.state[f"{name}.weight" if name else "weight"]
        if w.dim() == 2:
            return (int(w.shape[1]),)
        break
    raise CheckpointError("the model's input shape cannot be read from its first layer; pass --data so that it "
                          "can be run once on real rows")


def score_split(module: nn.Module, plan: ModulePlan, options: LoadOptions) -> ModulePlan:
    """A module whose encoder returns (B, 2H): the variance half's parameterization, from the flag, or the
    convention kept unless the data's scores clearly overrule it (readings.choose)."""
    enc = plan.encoder
    if options.encoder_var_param:
        return replace(plan, encoder=replace(enc, param=options.encoder_var_param,
                                             evidence=f"{enc.evidence}; set by --encoder-var-param"))
    rows = options.rows
    if rows is None or rows[0].numel() != plan.d:
        return plan
    params = [enc.param, *(p for p in ("logvar", "softplus_std", "logstd", "std") if p != enc.param)]
    readings = [Reading("", "", enc_param=p) for p in params]

    def build(r: Reading) -> ModuleAdapter:
        return ModuleAdapter(module, replace(plan, encoder=replace(enc, param=r.enc_param)))

    chosen, _, evidence = choose(build, readings, torch.as_tensor(rows), "that convention")
    return replace(plan, encoder=replace(enc, param=chosen.enc_param, evidence=f"{enc.evidence}; {evidence}"))


class quiet_logger:
    """Raise a peer library's logger to ERROR while it builds a model (its children inherit the level)."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def __enter__(self) -> None:
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)

