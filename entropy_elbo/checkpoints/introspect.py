"""Finding a checkpoint's variances: by names, by shapes, and saying how each was decided.

Every guess is a `Finding` with its evidence and the flag that overrides it. More than one
candidate is an error listing them all, never a silent pick.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from entropy_elbo.choices import VARIANCE_PARAMS
from entropy_elbo.errors import CheckpointError

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.options import LoadOptions

PARAMS = VARIANCE_PARAMS

# Last name component -> how the stored value maps to a variance (SPEC.md, "Names seen in practice").
DECODER_VAR_NAMES: dict[str, str] = {
    **dict.fromkeys(("logsigma2", "log_sigma2", "logvar_x", "log_var_x", "x_logvar", "dec_logvar", "decoder_logvar",
                     "log_sigma_sq", "logsigma_sq", "log_noise_var", "obs_logvar", "log_var_dec"), "logvar"),
    **dict.fromkeys(("log_scale", "log_sigma", "logsigma", "log_std", "logstd", "dec_log_std", "x_log_std",
                     "log_noise_std", "obs_log_std", "log_std_x"), "logstd"),
    **dict.fromkeys(("noise_std", "dec_std", "x_std", "std_x", "sigma_x", "obs_std", "noise_sigma", "sigma_param"),
                    "softplus_std"),
    **dict.fromkeys(("sigma2", "noise_var", "var_x", "obs_var", "dec_var"), "var"),
}
DECODER_VAR_NETS: dict[str, str] = {
    **dict.fromkeys(("dec_logvar", "decoder_logvar", "logvar_x", "logvar_net", "var_net", "decoder_var",
                     "dec_var", "log_sigma2_net", "logsigma2_net", "fc_dec_var", "variance_net"), "logvar"),
    **dict.fromkeys(("dec_std", "std_net", "sigma_net", "noise_std_net"), "softplus_std"),
}
ENCODER_VAR_HEADS: dict[str, str] = {
    **dict.fromkeys(("fc_var", "fc_logvar", "fc_log_var", "log_var", "logvar", "enc_logvar", "encoder_logvar",
                     "log_covariance", "fc22", "z_log_var", "logvar_z", "var_head", "logvar_head", "q_logvar"),
                    "logvar"),
    **dict.fromkeys(("fc_log_std", "enc_log_std", "z_log_std", "log_std_head", "fc_logstd"), "logstd"),
    **dict.fromkeys(("fc_std", "enc_std", "z_std", "std_head", "q_std"), "softplus_std"),
}
ENCODER_VAR_PARAMS: dict[str, str] = {
    **dict.fromkeys(("log_tau2", "logtau2", "q_z_logvar", "encoder_logvar", "enc_logvar", "log_tau_sq"), "logvar"),
    **dict.fromkeys(("log_tau", "q_z_log_std", "q_z_logstd"), "logstd"),
    **dict.fromkeys(("q_z_std", "tau", "enc_std", "tau_param"), "softplus_std"),
}
ENCODER_MEAN_HEADS = ("fc_mu", "fc_mean", "mu", "mean", "embedding", "enc_mu", "encoder_mu", "z_mean", "fc21",
                      "mu_head", "mean_head", "loc", "fc_loc", "q_mu", "z_mu")
PRIOR_VAR_PARAMS: dict[str, str] = dict.fromkeys(("logalpha2", "log_alpha2", "prior_logvar", "prior_log_var"),
                                                 "logvar")


def to_log_var(raw: Tensor, param: str) -> Tensor:
    """The stored value -> log-variance, for each parameterization in PARAMS."""
    if param == "logvar":
        return raw
    if param == "logstd":
        return 2 * raw
    if param == "std":
        return 2 * raw.log()
    if param == "var":
        return raw.log()
    if param == "softplus_std":
        return 2 * torch.nn.functional.softplus(raw).log()
    if param == "softplus_var":
        return torch.nn.functional.softplus(raw).log()
    raise CheckpointError(f"parameterization {param!r} unknown; pass --encoder-var-param (or --decoder-var-param) as "
                          f"one of {', '.join(PARAMS)}")


@dataclass
class Finding:
    """One decision about the checkpoint: where a variance is, how it is stored, and why we think so."""

    kind: str  # decoder: scalar | per-dim | network | fixed; encoder: head | constant | output
    name: str | None  # a state_dict key, a module name, or a method's output
    param: str | None  # one of PARAMS
    evidence: str
    override: str  # the flags that change this decision
    value: float | list[float] | None = None  # the variance itself (decoder scalar / per-dim, or given)
    implied: float | None = None  # a fixed sigma^2 that the peer's training loss implies (suggested, not used)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Assumption:
    """One thing taken for granted about a checkpoint: what, the evidence for it, and the flag that overrides it.

    Readers of any format (ours, peers' packages) append these to `Introspection.assumptions`; `inspect`,
    `estimate` and `collapse` show them all, as a table and in `--json`.
    """

    what: str  # e.g. "hidden activation: leaky_relu"
    evidence: str  # why: a name, a config key, a score on the data
    override: str  # the flag (or class) that changes it

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Introspection:
    """What `inspect` reports: model kind, H, D and the variance findings with their evidence."""

    source: str
    fmt: str
    model_kind: str
    h: int | None
    d: int | None
    decoder: Finding
    encoder: Finding
    prior: Finding | None = None
    notes: list[str] = field(default_factory=list)
    assumptions: list[Assumption] = field(default_factory=list)
    latent_shape: list[int] | None = None  # spatial latents (channels, h, w), flattened to H = channels x h x w
    refusal: str | None = None  # why no decoder likelihood applies (a Bernoulli decoder); collapse still works
    unresolved: str | None = None  # a reading the data could not decide, left open behind `refusal`
    declared: str | None = None  # a flag made Gaussian what reads as a non-Gaussian likelihood without it: the warning

    def assume(self, what: str, evidence: str, override: str) -> None:
        """Record one assumption (peer readers call this too)."""
        self.assumptions.append(Assumption(what, evidence, override))

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["decoder"] = self.decoder.to_dict()
        out["encoder"] = self.encoder.to_dict()
        out["prior"] = None if self.prior is None else self.prior.to_dict()
        return out


def last(name: str) -> str:
    """The last component of a dotted name, lower case."""
    return name.rsplit(".", 1)[-1].lower()


def is_layer_key(key: str) -> bool:
    return last(key) in ("weight", "bias", "weight_orig", "running_mean", "running_var", "num_batches_tracked")


def bare_params(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Floating tensors that are not a layer's weight or bias: candidates for learned variances."""
    return {k: v for k, v in state.items() if not is_layer_key(k) and v.is_floating_point()}


def layer_names(state: dict[str, Tensor]) -> list[str]:
    """Module names owning a weight, in state_dict order."""
    seen: dict[str, None] = {}
    for k in state:
        if k.rsplit(".", 1)[-1] == "weight":  # exactly: a key "x.Weight" has no "x.weight" to read
            seen.setdefault(k.rsplit(".", 1)[0] if "." in k else "", None)
    return list(seen)


def modules_named(state: dict[str, Tensor], names: dict[str, str] | tuple[str, ...]) -> list[str]:
    """Outermost modules (a layer or a block of layers) whose own name is in `names`, in state_dict order."""
    found: dict[str, None] = {}
    for layer in layer_names(state):
        parts = layer.split(".")
        for i in range(1, len(parts) + 1):
            if parts[i - 1].lower() in names:
                found.setdefault(".".join(parts[:i]), None)
                break
    return list(found)


def in_network(name: str, side: str) -> bool:
    """Whether module `name` sits inside a network named for `side` ("enc" or "dec"): `decoder.fc21` is a
    decoder layer, never a candidate for an encoder head (nor `encoder.x` for the decoder's variance)."""
    return "." in name and name.split(".", 1)[0].lower().startswith(side)


def sub_layers(state: dict[str, Tensor], module: str) -> list[str]:
    """Layer names inside `module` (itself included), in state_dict order."""
    return [n for n in layer_names(state) if n == module or n.startswith(module + ".")]


def ambiguous(what: str, candidates: list[str], flag: str) -> CheckpointError:
    return CheckpointError(f"{what}: several candidates ({', '.join(candidates)}); pick one with {flag}")


def check_param(param: str | None, flag: str) -> None:
    if param is not None and param not in PARAMS:
        raise CheckpointError(f"{flag}: {param!r} unknown; use one of {', '.join(PARAMS)}")


def variance_value(raw: Tensor, param: str, key: str) -> float | list[float]:
    """The variance the stored parameter `key` stands for, as a float or a list; a value <= 0 read as a variance
    or a std stands for none, and is refused naming the parameter."""
    values = raw.detach().double().reshape(-1)
    var = to_log_var(values, param).exp()
    bad = ~(values > 0) if param in ("var", "std") else torch.zeros_like(values, dtype=torch.bool)
    if bad.any():
        i = int(bad.nonzero()[0])
        where = f" at index {i}" if values.numel() > 1 else ""
        raise CheckpointError(f"parameter {key!r} read as {_PARAM_WORDS.get(param, param)} ({param}) holds "
                              f"{float(values[i]):g}{where}, but a {param} must be "
                              "positive; pick its parameterization with --decoder-var-param / --encoder-var-param, "
                              "or use an earlier checkpoint")
    return float(var[0]) if var.numel() == 1 else var.tolist()


DEC_OVERRIDE = "--decoder-var NAME --decoder-var-param P, or --decoder-variance VALUE for a fixed variance"
ENC_OVERRIDE = "--encoder-var NAME --encoder-var-param P"


def find_decoder_variance(state: dict[str, Tensor], *, name: str | None = None, param: str | None = None,
                          fixed_value: float | None = None, d: int | None = None) -> Finding:
    """Decoder variance from a parameter's name (scalar / per-dim), a named sub-network, or none (fixed)."""
    check_param(param, "--decoder-var-param")
    if name is not None:
        return _named_decoder(state, name, param, d)
    params = {k: DECODER_VAR_NAMES[last(k)] for k in bare_params(state) if last(k) in DECODER_VAR_NAMES}
    nets = {n: DECODER_VAR_NETS[last(n)] for n in modules_named(state, DECODER_VAR_NETS) if not in_network(n, "enc")}
    candidates = [*params, *nets]
    if len(candidates) > 1:
        raise ambiguous("decoder variance", candidates, "--decoder-var NAME")
    if params:
        (key, guess), = params.items()
        return _param_finding(state[key], key, param or guess, f"parameter {key!r} is named like a "
                              f"{_PARAM_WORDS[guess]}" + (f" (overridden to {param})" if param else ""), d)
    if nets:
        (net, guess), = nets.items()
        return Finding("network", net, param or guess, f"sub-network {net!r} is named like a decoder "
                       f"{_PARAM_WORDS[guess]} network", DEC_OVERRIDE)
    if fixed_value is not None:
        return Finding("fixed", None, "var", f"no learned decoder variance; sigma^2 = {fixed_value} from "
                       "--decoder-variance", DEC_OVERRIDE, value=float(fixed_value))
    return Finding("fixed", None, None, "no parameter or sub-network is named like a decoder variance (e.g. an MSE "
                   "loss)", DEC_OVERRIDE)


def frozen_at_zero(state: dict[str, Tensor], found: Finding, code: nn.Module | None = None) -> Finding:
    """A found log-variance (or log-std) that is bit-exactly 0.0 everywhere: training never leaves one there, so
    it was frozen (requires_grad=False, the paper authors' VAE-0): a fixed sigma^2 = 1, else `found` unchanged.

    Where the model's own code is at hand (`code`: a live module, a --model class), its parameter's
    requires_grad decides instead: a learnable one at 0.0 is one that has not been trained yet.
    """
    if found.kind not in ("scalar", "per-dim") or found.param not in ("logvar", "logstd") or state[found.name].any():
        return found
    own = dict(code.named_parameters()).get(found.name) if code is not None else None
    if own is not None and own.requires_grad:
        return found
    return Finding("fixed", None, "var", f"parameter {found.name!r} holds exactly 0.0 (bit-exact), a value that "
                   "training never leaves: a log-variance frozen at 0 (requires_grad=False, as the paper authors' "
                   "VAE-0), so sigma^2 = 1 is fixed, not learned, and the entropy form does not apply",
                   f"--decoder-var {found.name} to claim it was learned, or --decoder-variance VALUE",
                   value=1.0)


def decoder_finding(state: dict[str, Tensor], options: LoadOptions, d: int | None,
                    code: nn.Module | None = None) -> Finding:
    """The decoder variance under the flags: a method's output, a fixed or optimal sigma^2, or what the names say."""
    if options.decoder_var in ("decode()[1]", "decoder()[1]"):  # the method's second output, not a parameter
        return Finding("fixed", None, "logvar", f"--decoder-var {options.decoder_var}", DEC_OVERRIDE)
    found = find_decoder_variance(state, name=options.decoder_var, param=options.decoder_var_param, d=d)
    if options.decoder_variance is not None and options.decoder_var is None:
        ignored = f"; the learned {found.name!r} was set aside" if found.kind != "fixed" else ""
        if options.optimal_variance:
            return Finding("fixed", None, "var", "--decoder-variance optimal: the value that maximises the Monte Carlo "
                           f"ELBO given the encoder and decoder mean{ignored}", DEC_OVERRIDE, value=1.0)
        return Finding("fixed", None, "var", f"sigma^2 = {options.decoder_variance} from --decoder-variance{ignored}",
                       DEC_OVERRIDE, value=float(options.decoder_variance))
    return found if options.decoder_var is not None else frozen_at_zero(state, found, code)


def has_decoder_variance(state: dict[str, Tensor]) -> bool:
    """Whether a parameter or sub-network is named like a Gaussian decoder variance (the model's own evidence
    that its decoder is Gaussian, even when its value is fixed)."""
    return any(last(k) in DECODER_VAR_NAMES for k in bare_params(state)) or bool(modules_named(state,
                                                                                              DECODER_VAR_NETS))


_PARAM_WORDS = {"logvar": "log-variance", "logstd": "log-std", "std": "std", "var": "variance",
                "softplus_std": "std through softplus", "softplus_var": "variance through softplus"}


def _param_finding(raw: Tensor, key: str, param: str, evidence: str, d: int | None) -> Finding:
    n = raw.numel()
    if d is not None and n not in (1, d):
        raise CheckpointError(f"decoder variance {key!r}: shape {tuple(raw.shape)} has {n} values, neither 1 nor "
                              f"D={d}; pick another with --decoder-var NAME")
    kind = "scalar" if n == 1 else "per-dim"
    return Finding(kind, key, param, f"{evidence}; {n} value{'s' if n > 1 else ''} -> {kind}", DEC_OVERRIDE,
                   value=variance_value(raw, param, key))


def _named_decoder(state: dict[str, Tensor], name: str, param: str | None, d: int | None) -> Finding:
    if name in state and not is_layer_key(name):
        return _param_finding(state[name], name, param or "logvar", "given by --decoder-var"
                              + ("" if param else " (parameterization defaults to logvar)"), d)
    if sub_layers(state, name):
        return Finding("network", name, param or "logvar", "sub-network given by --decoder-var", DEC_OVERRIDE)
    raise CheckpointError(f"--decoder-var {name}: no such parameter or sub-module in the checkpoint; "
                          f"parameters there: {', '.join(list(bare_params(state))[:12]) or 'none'}")


def find_encoder_variance(state: dict[str, Tensor], *, name: str | None = None,
                          param: str | None = None) -> Finding | None:
    """Encoder variance from a head's name (an x-dependent layer) or a parameter's name (constant); None if neither."""
    check_param(param, "--encoder-var-param")
    if name is not None:
        if name in state and not is_layer_key(name):
            return Finding("constant", name, param or "logvar", "parameter given by --encoder-var", ENC_OVERRIDE,
                           value=variance_value(state[name], param or "logvar", name))
        if sub_layers(state, name):
            return Finding("head", name, param or "logvar", "head given by --encoder-var"
                           + ("" if param else " (parameterization defaults to logvar)"), ENC_OVERRIDE)
        raise CheckpointError(f"--encoder-var {name}: no such parameter or sub-module in the checkpoint")
    heads = {n: ENCODER_VAR_HEADS[last(n)] for n in modules_named(state, ENCODER_VAR_HEADS) if not in_network(n, "dec")}
    consts = {k: ENCODER_VAR_PARAMS[last(k)] for k in bare_params(state) if last(k) in ENCODER_VAR_PARAMS}
    candidates = [*heads, *consts]
    if len(candidates) > 1:
        raise ambiguous("encoder variance", candidates, "--encoder-var NAME (and --encoder-var-param P for how it is "
                        "stored)")
    if heads:
        (head, guess), = heads.items()
        return Finding("head", head, param or guess, f"layer {head!r} is named like an encoder "
                       f"{_PARAM_WORDS[guess]} head" + (f" (overridden to {param})" if param else ""), ENC_OVERRIDE)
    if consts:
        (key, guess), = consts.items()
        return Finding("constant", key, param or guess, f"parameter {key!r} is named like an encoder "
                       f"{_PARAM_WORDS[guess]} shared by all data points", ENC_OVERRIDE,
                       value=variance_value(state[key], param or guess, key))
    return None


def find_prior(state: dict[str, Tensor]) -> Finding | None:
    """A learned prior variance A (VAE-2's `logalpha2`), else None for N(0, I)."""
    found = [k for k in bare_params(state) if last(k) in PRIOR_VAR_PARAMS]
    if len(found) > 1:
        raise ambiguous("prior variance", found, "a --model class")
    if not found:
        return None
    return Finding("learned", found[0], "logvar", f"parameter {found[0]!r} is named like a prior log-variance (VAE-2)",
                   "a --model class", value=variance_value(state[found[0]], "logvar", found[0]))


def find_mean_head(state: dict[str, Tensor], exclude: str | None = None) -> list[str]:
    """Layers named like the encoder's mean head."""
    return [n for n in modules_named(state, ENCODER_MEAN_HEADS) if n != exclude and not in_network(n, "dec")]

