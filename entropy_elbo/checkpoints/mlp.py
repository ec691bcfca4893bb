"""A plain MLP state_dict, its architecture read from the Linear layers' names, order and shapes (`ShapesMLP`).

What the weights leave open (the activation, the output activation, whether the activation also follows the
encoder heads, how a split output stores its variance) is taken from the flags, scored on the data's rows
(readings.py), or, without rows, the conventional reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from entropy_elbo.checkpoints.introspect import (
    ENC_OVERRIDE,
    Finding,
    decoder_finding,
    find_mean_head,
    layer_names,
    sub_layers,
    to_log_var,
)
from entropy_elbo.checkpoints.likelihood import bernoulli_undecided
from entropy_elbo.checkpoints.model_inputs import refuse_conditional_mlp
from entropy_elbo.checkpoints.raw import RawCheckpoint
from entropy_elbo.checkpoints.readings import AmbiguousReading, Reading, choose, reading_convention
from entropy_elbo.checkpoints.source import Built, Source, Wrapped
from entropy_elbo.choices import ACTIVATIONS, OUTPUT_ACTIVATIONS
from entropy_elbo.errors import CheckpointError
from entropy_elbo.models.mlp import activation as make_activation
from entropy_elbo.models.protocol import VAEBase

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.options import LoadOptions

DECODER_WORDS = ("dec", "generat", "p_x", "px")
ENCODER_WORDS = ("enc", "infer", "q_z", "qz", "recog")


@dataclass
class MLPLayout:
    """Which Linear layers do what, in order; each layer is a state_dict module name."""

    d: int
    h: int
    trunk: list[str]
    mean_head: list[str]
    var_head: list[str]  # empty when the variance is a constant or the second half of the output
    decoder: list[str]
    split: bool = False  # mean and log-variance are the two halves of the encoder's last layer
    notes: list[str] = field(default_factory=list)
    dec_split: bool = False  # the decoder's last layer gives 2 x D: mean, then the variance (the authors' VAE-3)


def _linear_shape(state: dict[str, Tensor], layer: str) -> tuple[int, int]:
    w = state[f"{layer}.weight" if layer else "weight"]
    return int(w.shape[1]), int(w.shape[0])  # (in, out)


def _chain(state: dict[str, Tensor], layers: list[str], start: int, what: str) -> int:
    """Check that `layers` chain from `start` features; returns the output size."""
    size = start
    for layer in layers:
        n_in, n_out = _linear_shape(state, layer)
        if n_in != size:
            raise CheckpointError(f"{what}: layer {layer!r} takes {n_in} inputs but gets {size}; the architecture "
                                  "cannot be read from shapes, pass --model FILE.py:NAME")
        size = n_out
    return size


def mlp_layout(state: dict[str, Tensor], encoder: Finding | None, decoder: Finding) -> MLPLayout:
    """Read an MLP VAE's architecture from its Linear layers' names, order and shapes."""
    layers = layer_names(state)
    _check_linear(state, layers)
    trunk, mean_head, var_head, dec, dec_net, mean_name = _sort_layers(state, layers, encoder, decoder)
    d = _linear_shape(state, (trunk or mean_head)[0])[0]
    if mean_head and dec:  # x and z both concatenated with a k-wide condition: refused as conditional, by name
        refuse_conditional_mlp(d, _linear_shape(state, dec[-1])[1], _linear_shape(state, mean_head[-1])[1],
                               _linear_shape(state, dec[0])[0])
    h, split, notes = _latent_width(state, (trunk, mean_head, var_head, dec), d, encoder, mean_name)
    out = _chain(state, dec, h, "decoder")
    dec_split = out == 2 * d and decoder.kind == "fixed" and decoder.name is None
    if dec_split:
        notes.append(f"decoder's last layer has {out} = 2 x {d} outputs: first half the mean, second half the "
                     "variance, a network of z (VAE-3)")
    elif out != d:
        raise CheckpointError(f"decoder outputs {out} values but the encoder takes {d}; pass --model FILE.py:NAME")
    if dec_net and _chain(state, dec_net, h, "decoder variance network") not in (1, d):
        raise CheckpointError(f"decoder variance network {decoder.name!r} does not output 1 or D={d} values")
    return MLPLayout(d, h, trunk, mean_head, var_head, dec, split, notes, dec_split)


def _check_linear(state: dict[str, Tensor], layers: list[str]) -> None:
    """Every layer's weight is 2-d (a Linear layer), or the architecture cannot be read from shapes."""
    for n in layers:
        w = state[f"{n}.weight" if n else "weight"]
        if w.dim() != 2:
            raise CheckpointError(f"layer {n!r} has a {w.dim()}-d weight {tuple(w.shape)} (not a Linear layer); "
                                  "the architecture cannot be read from shapes, pass --model FILE.py:NAME")


def _sort_layers(state: dict[str, Tensor], layers: list[str], encoder: Finding | None,
                 decoder: Finding) -> tuple[list[str], list[str], list[str], list[str], list[str], str | None]:
    """(encoder trunk, mean head, variance head, decoder, decoder variance network, the mean head's name), by
    the layers' names and their order around the heads."""
    var_head = sub_layers(state, encoder.name) if encoder is not None and encoder.kind == "head" else []
    dec_net = sub_layers(state, decoder.name) if decoder.kind == "network" else []
    means = find_mean_head(state)
    means = [m for m in means if m not in var_head and m not in dec_net]
    if len(means) > 1:
        raise CheckpointError(f"encoder mean head: several candidates ({', '.join(means)}); pass --model FILE.py:NAME")
    mean_head = sub_layers(state, means[0]) if means else []
    rest = [n for n in layers if n not in var_head and n not in mean_head and n not in dec_net]
    heads = [layers.index(n) for n in mean_head + var_head]
    trunk, dec = [], []
    for n in rest:
        low = n.lower()
        if any(w in low for w in DECODER_WORDS):
            dec.append(n)
        elif any(w in low for w in ENCODER_WORDS) or (heads and layers.index(n) < min(heads)):
            trunk.append(n)
        elif heads and layers.index(n) > max(heads):
            dec.append(n)
        else:
            raise CheckpointError(f"layer {n!r}: cannot tell whether it belongs to the encoder or the decoder; "
                                  "pass --model FILE.py:NAME")
    if not trunk and not mean_head:
        raise CheckpointError("no encoder layers found by name (encoder.*, fc_mu, ...); pass --model FILE.py:NAME")
    if not dec:
        raise CheckpointError("no decoder layers found by name (decoder.*, ...); pass --model FILE.py:NAME")
    return trunk, mean_head, var_head, dec, dec_net, means[0] if means else None


def _latent_width(state: dict[str, Tensor], parts: tuple[list[str], list[str], list[str], list[str]], d: int,
                  encoder: Finding | None, mean_name: str | None) -> tuple[int, bool, list[str]]:
    """(H, whether the encoder's last layer holds mean and variance side by side, notes) from the (trunk, mean
    head, variance head, decoder) layers, checking that they chain."""
    trunk, mean_head, var_head, dec = parts
    trunk_out = _chain(state, trunk, d, "encoder")
    split = False
    notes: list[str] = []
    if mean_head:
        h = _chain(state, mean_head, trunk_out, "encoder mean head")
        if var_head and _chain(state, var_head, trunk_out, "encoder variance head") != h:
            raise CheckpointError(f"encoder heads {mean_name!r} and {encoder.name!r} have different output sizes")
    else:
        h = _linear_shape(state, dec[0])[0]
        if encoder is None and trunk_out == 2 * h:
            split = True
            notes.append(f"encoder's last layer has {trunk_out} = 2 x {h} outputs (the decoder takes {h}): "
                         "first half the mean, second half the variance")
        elif trunk_out != h:
            raise CheckpointError(f"encoder outputs {trunk_out} values but the decoder takes {h}; "
                                  "pass --model FILE.py:NAME")
        if var_head and _chain(state, var_head, trunk_out, "encoder variance head") != h:
            raise CheckpointError(f"encoder variance head {encoder.name!r} does not output H={h} values; "
                                  "pass --model FILE.py:NAME")
    return h, split, notes


OUTPUTS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "leaky_relu": nn.functional.leaky_relu}


class ShapesMLP(VAEBase):
    """A VAE rebuilt from a plain MLP state_dict: Linear layers with one activation between them."""

    prior_key: str | None = None  # a learned prior log-variance (VAE-2's logalpha2)

    @property
    def prior_log_var(self) -> Tensor | None:
        return None if self.prior_key is None else self.tensor(self.prior_key).reshape(-1)

    def __init__(self, state: dict[str, Tensor], layout: MLPLayout, encoder: Finding | None, decoder: Finding,
                 activation: str = "relu", output: str | None = None, head_activation: bool = False) -> None:
        super().__init__()
        self.layout, self.enc, self.dec = layout, encoder, decoder
        self.latent_dim = layout.h
        self.decoder_variance = decoder.kind  # type: ignore[assignment]
        self.act = make_activation(activation)
        self.output = None if output == "linear" else output
        self.out_act = None if self.output is None else OUTPUTS[self.output]
        self.head_activation = head_activation  # the activation also after the encoder heads (the authors' main.py)
        self.weights = nn.ParameterDict()
        self._names: dict[str, str] = {}
        for k, v in state.items():
            if v.is_floating_point():
                safe = f"t{len(self._names)}"
                self._names[k] = safe
                self.weights[safe] = nn.Parameter(v.detach().clone().float(), requires_grad=False)
        self.dec_net = sub_layers(state, decoder.name) if decoder.kind == "network" and not layout.dec_split else []
        linear = (len(layout.trunk) == 1 and not layout.mean_head and not layout.split and len(layout.decoder) == 1
                  and encoder is not None and encoder.kind == "constant" and decoder.kind == "scalar"
                  and not self.output)
        self.ppca = self._ppca if linear else None  # a linear VAE defines a pPCA model (eq. 26)

    def _ppca(self) -> tuple[Tensor, Tensor, Tensor]:
        """(W, mu0, sigma^2) of the pPCA model the linear decoder defines: its weight, its bias (eq. 26)."""
        layer = self.layout.decoder[0]
        prefix = f"{layer}." if layer else ""
        bias = self._names.get(prefix + "bias")
        w = self.tensor(prefix + "weight")
        mu0 = self.weights[bias] if bias is not None else torch.zeros(w.shape[0], device=w.device)
        return w, mu0, self.decoder_log_var(torch.zeros(1, self.latent_dim, device=w.device)).exp()

    def tensor(self, key: str) -> Tensor:
        return self.weights[self._names[key]]

    def _run(self, x: Tensor, layers: list[str], act_last: bool) -> Tensor:
        for i, layer in enumerate(layers):
            prefix = f"{layer}." if layer else ""
            bias = self._names.get(prefix + "bias")
            x = nn.functional.linear(x, self.tensor(prefix + "weight"), None if bias is None else self.weights[bias])
            if i < len(layers) - 1 or act_last:
                x = self.act(x)
        return x

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        lay = self.layout
        x = x.reshape(x.shape[0], -1)  # (B, D)
        trunk = self._run(x, lay.trunk, act_last=bool(lay.mean_head))
        if lay.split:
            nu, raw = trunk[:, : lay.h], trunk[:, lay.h:]
            return nu, to_log_var(raw, self.enc_param)
        head = self.head_activation
        nu = self._run(trunk, lay.mean_head, act_last=head) if lay.mean_head else trunk  # (B, H)
        if self.enc is not None and self.enc.kind == "constant":
            return nu, self.encoder_log_var_constant.expand_as(nu)
        return nu, to_log_var(self._run(trunk, lay.var_head, act_last=head), self.enc_param)

    @property
    def enc_param(self) -> str:
        return self.enc.param if self.enc is not None and self.enc.param else "logvar"

    @property
    def encoder_log_var_constant(self) -> Tensor | None:
        if self.enc is None or self.enc.kind != "constant":
            return None
        return to_log_var(self.tensor(self.enc.name), self.enc_param).reshape(-1)

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        out = self._run(z, self.layout.decoder, act_last=False)  # (B, D), or (B, 2D) for a split output
        mu = out[:, : self.layout.d] if self.layout.dec_split else out
        if self.out_act is not None:
            mu = self.out_act(mu)
        if self.layout.dec_split:
            return mu, to_log_var(out[:, self.layout.d:], self.dec.param or "logvar")
        return mu, self.decoder_log_var(z)

    def decoder_log_var(self, z: Tensor) -> Tensor:
        dec = self.dec
        if self.layout.dec_split:
            return self.decode(z)[1]
        if dec.kind == "network":
            return to_log_var(self._run(z, self.dec_net, act_last=False), dec.param or "logvar")
        if dec.kind == "fixed":
            return torch.tensor(math.log(dec.value) if dec.value else 0.0, dtype=torch.float64, device=z.device)
        raw = self.tensor(dec.name)
        return to_log_var(raw, dec.param or "logvar").reshape(-1 if raw.numel() > 1 else ())


# ---------------------------------------------------------------------------------------------- readings


def _candidates(layout: MLPLayout, encoder: Finding, decoder: Finding, options: LoadOptions, pythae: bool,
                split_param: bool) -> tuple[list[Reading], bool]:
    """Every reading the flags leave open, and whether the activation after the encoder heads is open."""
    acts = [options.activation] if options.activation else ["relu"] if pythae else list(ACTIVATIONS)
    outs = [options.output_activation] if options.output_activation else ["sigmoid"] if pythae else \
        list(OUTPUT_ACTIVATIONS)
    open_head = bool(layout.mean_head and layout.trunk) and not pythae
    heads = [options.head_activation] if options.head_activation is not None else [False, True] if open_head \
        else [False]
    enc_params = ([None] if not split_param else [encoder.param] if options.encoder_var_param
                  else ["logvar", "softplus_std", "logstd", "std"])
    dec_params = ([None] if not layout.dec_split else [decoder.param] if options.decoder_var_param
                  else ["logvar", "softplus_std", "logstd"])
    if len(layout.trunk) + len(layout.mean_head) <= 1 and len(layout.decoder) <= 1:
        acts = acts[:1]  # no hidden layer: the activation never runs
    return [Reading(a, o, hd, e, dp) for a in acts for o in outs for hd in heads for e in enc_params
            for dp in dec_params], open_head


def read_mlp(state: dict[str, Tensor], layout: MLPLayout, encoder: Finding, decoder: Finding, options: LoadOptions,
             pythae: bool, split_param: bool,
             prior_key: str | None = None) -> tuple[ShapesMLP, list[tuple[str, str, str]], str | None]:
    """The plain MLP under the reading the flags give, the data's scores pick (readings.py), or, without rows,
    the conventional one (relu, linear output); returns the model, its assumptions and, when every reading
    that fits has a sigmoid output (a Bernoulli decoder, refused for estimate), the undecided choice."""
    readings, open_head = _candidates(layout, encoder, decoder, options, pythae, split_param)
    convention, usual = reading_convention(state, layout, decoder)
    first = next((r for r in readings if all(getattr(r, k) in (v, None) for k, v in usual.items())), None)
    if first is None:
        convention = None  # the flags rule the convention's reading out
    else:
        readings = [first, *[r for r in readings if r != first]]

    def build(r: Reading) -> ShapesMLP:
        enc = replace(encoder, param=r.enc_param) if r.enc_param else encoder
        dec = replace(decoder, param=r.dec_param) if r.dec_param else decoder
        mlp = ShapesMLP(state, layout, enc, dec, r.activation, r.output, r.head_activation)
        mlp.prior_key = prior_key  # VAE-2's learned prior enters every reading's score
        return mlp

    chosen, evidence, unresolved = _pick(build, readings, layout, decoder, options, pythae, convention)
    if split_param:
        encoder.param = chosen.enc_param
        encoder.evidence += f"; {chosen.enc_param}: {evidence}" if not options.encoder_var_param else ""
    if layout.dec_split:
        decoder.param = chosen.dec_param
    return build(chosen), _assumptions(chosen, evidence, options, pythae, open_head), unresolved


def _pick(build: object, readings: list[Reading], layout: MLPLayout, decoder: Finding, options: LoadOptions,
          pythae: bool, convention: str | None) -> tuple[Reading, str, str | None]:
    """(the reading, its evidence, the undecided choice when every close reading is a Bernoulli decoder)."""
    if len(readings) == 1:
        return readings[0], "given by the flags", None
    if options.rows is None or options.rows[0].numel() != layout.d:  # no rows, or rows that do not fit
        return readings[0], ("not checked against data (pass --data to score the readings the weights leave open); "
                             "the conventional reading"), None
    try:
        chosen, _, evidence = choose(build, readings, torch.as_tensor(options.rows), convention)
    except AmbiguousReading as err:  # all Bernoulli-looking: refused as such where a likelihood is needed
        if not bernoulli_undecided(err.candidates, options.rows, decoder.kind, pythae, options.output_activation):
            raise
        return err.candidates[0], "undecided", str(err)
    return chosen, evidence, None


def _assumptions(chosen: Reading, evidence: str, options: LoadOptions, pythae: bool,
                 open_head: bool) -> list[tuple[str, str, str]]:
    """What the chosen reading takes for granted: (what, evidence, the flag that overrides it)."""
    given = {"activation": options.activation, "output": options.output_activation or pythae,
             "head": options.head_activation is not None}
    assumed = [(f"hidden activation {chosen.activation}", "given" if given["activation"] else evidence,
                "--activation"),
               (f"output activation {chosen.output}", ("pythae's default decoder" if pythae else "given")
                if given["output"] else evidence, "--output-activation")]
    if open_head or options.head_activation is not None:
        assumed.append((f"activation {'also' if chosen.head_activation else 'not'} applied after the encoder heads",
                        "given" if given["head"] else evidence, "--head-activation / --no-head-activation"))
    return assumed


class MLPSource(Source):
    """The last resort: Linear layers that chain, named so that encoder and decoder can be told apart."""

    name = "plain MLP from shapes"

    def recognise(self, raw: RawCheckpoint, options: LoadOptions) -> bool:
        return True

    def build(self, raw: RawCheckpoint, options: LoadOptions, source: str) -> Built:
        kind = (f"pythae {raw.meta['model_config'].get('name')} (default MLP networks)" if raw.fmt == "pythae"
                else "plain MLP from the weights' shapes")
        return Built(None, kind, raw.state)

    def wrap(self, built: Built, raw: RawCheckpoint, options: LoadOptions, source: str, encoder: Finding | None,
             prior: Finding | None, probe: Tensor | None) -> Wrapped:
        """The layout from the shapes, then the reading the flags, the data or the convention give."""
        state = built.state
        layout = mlp_layout(state, encoder, decoder_finding(state, options, None))
        decoder = decoder_finding(state, options, layout.d)
        if encoder is None and not layout.split:
            raise CheckpointError(f"no encoder variance: no layer is named like a variance head (fc_var, logvar, ...) "
                                  f"and the encoder outputs {layout.h} values, not 2 x H; name it with --encoder-var")
        split_param = encoder is None
        if encoder is None:
            encoder = Finding("output", "second half of the encoder's output", options.encoder_var_param or "logvar",
                              layout.notes[0], ENC_OVERRIDE)
        if layout.dec_split:
            decoder = Finding("network", "second half of the decoder's output", options.decoder_var_param or "logvar",
                              layout.notes[-1], "--decoder-var-param P")
        model, assumed, unresolved = read_mlp(state, layout, encoder, decoder, options, raw.fmt == "pythae",
                                              split_param, None if prior is None else prior.name)
        notes = [f"architecture read from shapes: encoder {len(layout.trunk)} + head, decoder "
                 f"{len(layout.decoder)} Linear layers"]
        return Wrapped(model, layout.h, layout.d, encoder, decoder, notes, assumed, unresolved,
                       model.output or "linear")
