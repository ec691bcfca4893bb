"""Checkpoint formats: `load_model` opens any supported file and returns a model meeting the protocol."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from entropy_elbo.checkpoints.adapters import OUTPUT_ACTIVATIONS, ModuleAdapter, ShapesMLP, mlp_layout, plan_module
from entropy_elbo.checkpoints.autoencoder_kl import (
    AUTOENCODER_KL_DECODER,
    AutoencoderKLAdapter,
    build_autoencoder_kl,
    logvar_finding,
)
from entropy_elbo.checkpoints.formats import RawCheckpoint, read_checkpoint
from entropy_elbo.checkpoints.introspect import (
    DEC_OVERRIDE,
    ENC_OVERRIDE,
    Finding,
    Introspection,
    find_decoder_variance,
    find_encoder_variance,
    find_prior,
    frozen_at_zero,
    has_decoder_variance,
    layer_names,
)
from entropy_elbo.checkpoints.likelihood import loss_reason, refuse_other_priors, sigmoid_reason
from entropy_elbo.checkpoints.native import (
    check_variances,
    is_native,
    load_checkpoint,
    save_checkpoint,
    unreadable_reason,
)
from entropy_elbo.checkpoints.peers import (
    build_pythae,
    lightning_implied_variance,
    pythae_implied_variance,
    pythae_name,
)
from entropy_elbo.checkpoints.readings import AmbiguousReading, Reading, choose
from entropy_elbo.checkpoints.user import build_user_model, load_strict, parse_kwargs
from entropy_elbo.checkpoints.vanilla import VanillaLayout, vanilla_from_shapes
from entropy_elbo.errors import CheckpointError, ModelError
from entropy_elbo.limits import check_memory, check_regular, size_text
from entropy_elbo.models.config import ACTIVATIONS
from entropy_elbo.models.protocol import GaussianVAE, VAEBase


@dataclass
class LoadedModel:
    """A model ready for the estimators, with what we know of where it came from."""

    model: GaussianVAE
    source: str
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def introspection(self) -> Introspection | None:
        found = self.metadata.get("introspection")
        return found if isinstance(found, Introspection) else None


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

    @property
    def optimal_variance(self) -> bool:
        """--decoder-variance optimal: sigma^2 = sigma^2 r is chosen from the data (estimate.at_optimal_variance)."""
        return self.decoder_variance == OPTIMAL


def load_model(path: str | Path, *, device: torch.device | str = "cpu",
               options: LoadOptions | None = None) -> LoadedModel:
    """Open a checkpoint of any supported format as a model in eval mode on `device`."""
    path = Path(path)
    options = options or LoadOptions()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder; check the checkpoint path")
    check_regular(path, "a checkpoint file or a pythae model folder", CheckpointError, folder_ok=True)
    if path.is_file() and is_native(path) and options.model is None:
        model, meta = load_checkpoint(path, device=device)
        meta["introspection"] = native_introspection(path, model)
        return LoadedModel(model, f"{path} (entropy-elbo checkpoint, {model.config.kind})", meta)
    if path.is_file() and (reason := unreadable_reason(path)):
        raise CheckpointError(reason)
    raw = read_checkpoint(path, trust_code=options.trust_code, model_given=options.model is not None)
    check_finite(raw.state, path)
    try:
        model, intro = adapt(raw, options, str(path))
        check_variances(model, path)
    except (CheckpointError, ModelError) as err:  # every guess's message names the file it was made about
        if str(path) in str(err):
            raise
        raise CheckpointError(f"{path}: {err}") from None
    return LoadedModel(model.to(device).eval(), f"{path} ({intro.model_kind})", {"introspection": intro})


def wrap_module(module: nn.Module, example: Tensor, options: LoadOptions | None = None) -> tuple[GaussianVAE,
                                                                                            Introspection | None]:
    """A live module as a GaussianVAE, found out as `load_model` finds out a checkpoint (and with its overrides).

    Our own models are used as they are. Any other module is wrapped in a `ModuleAdapter`, after one run of its
    encoder and decoder on the first rows of `example` (the caller keeps its train/eval flags and RNG state).
    """
    options = options or LoadOptions()
    if options.model is not None:
        raise CheckpointError("model: a live module needs no --model class; drop options.model")
    overridden = any(v is not None for v in (options.decoder_var, options.decoder_var_param, options.encoder_var,
                                             options.encoder_var_param, options.decoder_variance))
    if isinstance(module, VAEBase) and not overridden:
        return module, None
    state = {k: v for k, v in module.state_dict().items() if isinstance(v, Tensor)}
    check_finite(state, Path("the live module"))
    raw = RawCheckpoint("live module", state, module=module)
    model, intro = adapt(raw, replace(options, input_shape=tuple(example.shape[1:])), f"live {type(module).__name__}",
                         probe=example[:2])
    check_variances(model, intro.source)
    return model, intro


def check_finite(state: dict[str, Tensor], path: Path) -> None:
    """Refuse tensors that are not dense real numbers in memory (sparse, meta, quantized, complex, 8-bit float),
    integer layer weights, and floating tensors holding NaN or Inf, naming the tensor and its shape."""
    for name, tensor in state.items():
        odd = odd_tensor(tensor)
        if odd:
            raise CheckpointError(f"{path}: tensor {name!r} of shape {tuple(tensor.shape)} is {odd}; entropy-elbo "
                                  "reads dense float64/32/16 or bfloat16 tensors, save the weights as those")
        if name.rsplit(".", 1)[-1] == "weight" and not tensor.is_floating_point():
            raise CheckpointError(f"{path}: layer weight {name!r} of shape {tuple(tensor.shape)} is of dtype "
                                  f"{str(tensor.dtype).replace('torch.', '')}, not floating point; save a float model")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            what = "NaN" if torch.isnan(tensor).any() else "Inf"
            raise CheckpointError(f"{path}: tensor {name!r} of shape {tuple(tensor.shape)} holds {what}; the file is "
                                  "damaged or its training diverged, use an earlier checkpoint")


VIEW_SLACK = 2**20  # an expanded view smaller than this is copied out when used; a larger one is refused


def odd_tensor(tensor: Tensor) -> str | None:
    """What makes `tensor` unusable as a weight (its layout, device or dtype), or None for a dense real tensor."""
    if tensor.is_meta:
        return "on the meta device (shape only, no values)"
    if tensor.layout != torch.strided or tensor.is_nested:
        return f"stored in layout {str(tensor.layout).replace('torch.', '')}"
    if tensor.is_quantized:
        return f"quantized ({str(tensor.dtype).replace('torch.', '')})"
    if tensor.is_complex():
        return f"complex ({str(tensor.dtype).replace('torch.', '')})"
    if tensor.is_floating_point() and tensor.element_size() == 1:
        return f"in an 8-bit float format ({str(tensor.dtype).replace('torch.', '')})"
    logical, stored = tensor.numel() * tensor.element_size(), tensor.untyped_storage().nbytes()
    if logical > max(stored, VIEW_SLACK):  # strides of 0 (expand) or overlapping: every use would copy it out
        return (f"a view over {size_text(stored)} of storage whose strides {tuple(tensor.stride())} spread it to "
                f"{size_text(logical)}")
    return None


def inspect_checkpoint(path: str | Path, options: LoadOptions | None = None) -> Introspection:
    """What `load_model` finds in `path`, with the evidence for every guess."""
    return load_model(path, options=options).introspection


def native_introspection(path: Path, model: nn.Module) -> Introspection:
    """Our own files need no guessing: everything is in the saved config."""
    config = model.config
    lsig = model.decoder_log_var(torch.zeros(1, config.latent_dim)).detach().double().exp().reshape(-1)
    value = float(lsig[0]) if lsig.numel() == 1 else lsig.tolist()
    dec = Finding(model.decoder_variance, "log_sigma2", "logvar", "entropy-elbo checkpoint: stored in its config",
                  "none needed", value=value)
    const = model.encoder_log_var_constant
    enc = (Finding("constant", "log_tau2", "logvar", "entropy-elbo linear VAE: one tau per latent", "none needed",
                   value=const.detach().double().exp().tolist()) if const is not None else
           Finding("head", "fc_var", "logvar", "entropy-elbo checkpoint: its log-variance head", "none needed"))
    return Introspection(str(path), "entropy-elbo", config.kind, config.latent_dim, config.data_dim, dec, enc)


def _probe_shape(raw: RawCheckpoint, options: LoadOptions) -> tuple[int, ...]:
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


def _decoder_finding(state: dict[str, Tensor], options: LoadOptions, d: int | None, pythae: dict | None,
                     code: nn.Module | None = None) -> Finding:
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


def _implied_variance(decoder: Finding, raw: RawCheckpoint, d: int) -> None:
    """A fixed variance the peer's training loss implies (pythae's config, PyTorch-VAE's kld_weight): say it."""
    if decoder.kind != "fixed" or decoder.value is not None:
        return
    if raw.fmt == "pythae":
        implied = pythae_implied_variance(raw.meta["model_config"])
    elif raw.fmt == "diffusers":
        implied = None, AUTOENCODER_KL_DECODER
    else:
        implied = lightning_implied_variance(raw.meta.get("hyper_parameters"), d)
    if implied is not None:
        decoder.implied, decoder.evidence = implied


MODULE_KINDS = {"torchscript": "TorchScript module", "live module": "live module (in this process)"}


def adapt(raw: RawCheckpoint, options: LoadOptions, source: str,
          probe: Tensor | None = None) -> tuple[nn.Module, Introspection]:
    """Wrap what `read_checkpoint` found into a GaussianVAE, deciding every variance with its evidence (a module is
    run once on `probe` rows, by default random ones of its input shape)."""
    state = raw.state
    refuse_other_priors(state)
    pythae = raw.meta.get("model_config") if raw.fmt == "pythae" else None
    module, kind = None, None
    if options.model is not None:
        module = build_user_model(options.model, parse_kwargs(options.model_kwargs))
        load_strict(module, state, raw.prefix, source)
        state = {k: v for k, v in module.state_dict().items() if isinstance(v, Tensor)}
        kind = f"user class {options.model}"
    elif raw.module is not None:
        module, kind = raw.module, MODULE_KINDS.get(raw.fmt, "pickled module (trusted)")
    elif pythae is not None and ("encoder" in raw.meta or "decoder" in raw.meta):
        module, kind = _pythae_module(raw), f"pythae {pythae.get('name')} with custom networks (trusted pickles)"
    elif raw.fmt == "diffusers":
        module = build_autoencoder_kl(raw.meta["config"], state, options.input_shape, source)
        kind = "diffusers AutoencoderKL (diffusers' own class)"
    elif pythae is not None and (built := build_pythae(pythae, state, source)) is not None:
        module, kind = built, f"pythae {pythae_name(pythae)} (pythae's own class and default networks)"
    elif (vanilla := vanilla_from_shapes(state)) is not None:
        module, kind = vanilla, "PyTorch-VAE VanillaVAE layout read from shapes"
    encoder = find_encoder_variance(state, name=options.encoder_var, param=options.encoder_var_param)
    if (pythae is not None or raw.fmt == "diffusers") and module is not None and options.encoder_var is None:
        # the peer's own encoder output (log_covariance, latent_dist.logvar), not a hooked layer
        encoder = logvar_finding() if raw.fmt == "diffusers" else None
    if encoder is not None and options.encoder_var is None and options.encoder_var_param:
        encoder.evidence += f" (parameterization set by --encoder-var-param {options.encoder_var_param})"
    prior = find_prior(state)
    notes: list[str] = []
    assumed: list[tuple[str, str, str]] = []
    unresolved = None
    if module is not None:
        own_code = module if options.model is not None or raw.module is not None else None  # not one we built
        decoder = _decoder_finding(state, options, None, pythae, own_code)
        shape = getattr(module, "input_shape", None) if options.input_shape is None else None
        if probe is None:
            shape = tuple(shape or _probe_shape(raw, options))
            check_memory(8 * math.prod(shape), f"{source}: a probe of 2 inputs of shape {shape}",
                         "pass --data whose rows are the model's real inputs", CheckpointError)
            probe = torch.rand(2, *shape)
        module.eval()
        plan = plan_module(module, state, encoder, decoder, probe,
                           explicit=options.decoder_var is not None or options.decoder_variance is not None)
        if plan.split:
            plan = _score_split(module, plan, options)
        model: nn.Module = ModuleAdapter(module, plan)
        if plan.decoder.kind in ("scalar", "per-dim") and isinstance(plan.decoder.value, list) \
                and len(plan.decoder.value) != plan.d:
            raise CheckpointError(f"decoder variance {plan.decoder.name!r} has {len(plan.decoder.value)} values but "
                                  f"D={plan.d}; pick another with --decoder-var NAME")
        h, d, encoder, decoder = plan.h, plan.d, plan.encoder, plan.decoder
        if isinstance(module, VanillaLayout):
            notes.append(f"architecture read from shapes: {len(module.encoder)} conv blocks, input "
                         f"{'x'.join(map(str, module.input_shape))}, 3x3 stride-2 convolutions, LeakyReLU, Tanh output "
                         "(PyTorch-VAE's VanillaVAE); pass --model FILE.py:NAME if yours differs")
    else:
        decoder = _decoder_finding(state, options, None, pythae)
        layout = mlp_layout(state, encoder, decoder)
        decoder = _decoder_finding(state, options, layout.d, pythae)
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
        model, reading, unresolved = _read_mlp(state, layout, encoder, decoder, options, pythae, split_param,
                                               None if prior is None else prior.name)
        h, d = layout.h, layout.d
        kind = f"pythae {pythae.get('name')} (default MLP networks)" if pythae else "plain MLP from the weights' shapes"
        notes.append(f"architecture read from shapes: encoder {len(layout.trunk)} + head, decoder "
                     f"{len(layout.decoder)} Linear layers")
        assumed.extend(reading)
    _implied_variance(decoder, raw, d)
    if prior is not None:
        model.prior_key = prior.name  # VAE-2: p(z) = N(0, A) with learned diagonal A
    if raw.prefix:
        notes.append(f"key prefix {raw.prefix!r} stripped")
    intro = Introspection(source, raw.fmt, kind, h, d, decoder, encoder, prior, notes, unresolved=unresolved)
    if isinstance(module, AutoencoderKLAdapter):
        _autoencoder_kl_assumptions(intro, module, str(raw.meta["config_from"]))
    _variance_assumptions(intro, module is not None, options.optimal_variance)
    for item in assumed:
        intro.assume(*item)
    intro.refusal = loss_reason(raw.meta)
    rows = options.rows
    if (intro.refusal is None and pythae is None and decoder.kind == "fixed" and not has_decoder_variance(state)
            and rows is not None
            and rows[0].numel() == d and options.output_activation != "sigmoid"):
        output = (model.output or "linear") if isinstance(model, ShapesMLP) else None
        try:
            intro.refusal = sigmoid_reason(model, rows, output)
        except (RuntimeError, ValueError, CheckpointError, ModelError):
            intro.refusal = None  # the model cannot run on these rows: the estimate's own checks say why
    return model, intro


def _read_mlp(state: dict[str, Tensor], layout: object, encoder: Finding, decoder: Finding, options: LoadOptions,
              pythae: dict | None, split_param: bool,
              prior_key: str | None = None) -> tuple[ShapesMLP, list[tuple[str, str, str]], str | None]:
    """The plain MLP under the reading the flags give, the data's scores pick (readings.py), or, without rows,
    the conventional one (relu, linear output); returns the model, its assumptions and, when every reading
    that fits has a sigmoid output (a Bernoulli decoder, refused for estimate), the undecided choice."""
    unresolved = None
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
    readings = [Reading(a, o, hd, e, dp) for a in acts for o in outs for hd in heads for e in enc_params
                for dp in dec_params]
    convention, usual = _convention(state, layout, decoder)
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

    if len(readings) == 1:
        chosen, evidence = readings[0], "given by the flags"
    elif options.rows is None or options.rows[0].numel() != layout.d:  # no rows, or rows that do not fit
        chosen, evidence = readings[0], ("not checked against data (pass --data to score the readings the weights "
                                         "leave open); the conventional reading")
    else:
        try:
            chosen, _, evidence = choose(build, readings, torch.as_tensor(options.rows), convention)
        except AmbiguousReading as err:  # all Bernoulli-looking: refused as such where a likelihood is needed
            rows = options.rows
            if (pythae or options.output_activation or decoder.kind != "fixed" or float(rows.min()) < 0
                    or float(rows.max()) > 1 or any(c.output != "sigmoid" for c in err.candidates)):
                raise
            chosen, evidence, unresolved = err.candidates[0], "undecided", str(err)
    if split_param:
        encoder.param = chosen.enc_param
        encoder.evidence += f"; {chosen.enc_param}: {evidence}" if not options.encoder_var_param else ""
    if layout.dec_split:
        decoder.param = chosen.dec_param
    model = build(chosen)
    given = {"activation": options.activation, "output": options.output_activation or pythae,
             "head": options.head_activation is not None}
    assumed = [(f"hidden activation {chosen.activation}", "given" if given["activation"] else evidence,
                "--activation"),
               (f"output activation {chosen.output}", ("pythae's default decoder" if pythae else "given")
                if given["output"] else evidence, "--output-activation")]
    if open_head or options.head_activation is not None:
        assumed.append((f"activation {'also' if chosen.head_activation else 'not'} applied after the encoder heads",
                        "given" if given["head"] else evidence, "--head-activation / --no-head-activation"))
    return model, assumed, unresolved


def _score_split(module: nn.Module, plan: object, options: LoadOptions) -> object:
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


AUTHORS_MAIN = {"encoder_hidden", "encoder_hidden2", "encoder_mu", "encoder_logvar", "decoder_hidden",
                "decoder_hidden2", "decoder_out"}


def _convention(state: dict[str, Tensor], layout: object, decoder: Finding) -> tuple[str, dict[str, object]]:
    """The convention whose reading comes first (readings.choose): a known codebase whose layer names the
    state_dict follows, else the common default."""
    names = set(layer_names(state))
    if names >= AUTHORS_MAIN:
        return ("the paper authors' main.py/model.py layer names: LeakyReLU after every layer, both encoder heads "
                "and the decoder output"), {"activation": "leaky_relu", "head_activation": True, "output": "leaky_relu"}
    sequential = all(n.startswith(("encoder.", "decoder.")) or n in ("encoder", "decoder") for n in names)
    if sequential and (decoder.name in ("noise_std", "sigma_param") or layout.dec_split):
        usual: dict[str, object] = {"activation": "relu", "output": "linear"}
        if layout.split:
            usual["enc_param"] = "softplus_std"
        if layout.dec_split:
            usual["dec_param"] = "softplus_std"
        return ("the paper authors' verification/VAE.py and streamingVAE convention (encoder/decoder Sequentials "
                "with ReLU, a softplus std in the second half of a 2 x H or 2 x D output, softplus(noise_std))"), usual
    return ("no known codebase's names, so the common default (ReLU between layers, a linear output, no activation "
            "after the heads, log-variances)"), {"activation": "relu", "output": "linear", "head_activation": False,
                                                 "enc_param": "logvar", "dec_param": "logvar"}


def _variance_assumptions(intro: Introspection, has_methods: bool, optimal: bool = False) -> None:
    """The assumptions every reading makes: the prior, the decoder mean, and both variances' parameterizations;
    an `optimal` sigma^2 is stated without a number: it is chosen from the data after the pass."""
    peer = {"pythae": "the pythae class's KL term is against N(0, I) (models with other priors are refused)",
            "diffusers": "AutoencoderKL's KL term is against N(0, I)"}.get(intro.fmt)
    if intro.prior is None:
        intro.assume("prior p(z) = N(0, I)", peer or "no parameter named like a prior variance (logalpha2, "
                     "prior_logvar)", "none: other priors are refused")
    else:
        intro.assume(f"prior p(z) = N(0, diag exp({intro.prior.name})) (VAE-2)", intro.prior.evidence,
                     intro.prior.override)
    if has_methods:
        intro.assume("decoder mean mu(z) = what the model's decode()/decoder returns",
                     "the model's own method is authoritative", "--model FILE.py:NAME")
    enc, dec = intro.encoder, intro.decoder
    intro.assume(f"encoder variance {enc.name} is a {enc.param}", enc.evidence, enc.override)
    if dec.kind == "fixed" and optimal:
        intro.assume("decoder variance fixed at sigma*^2 = sigma^2 r, chosen from the data after the pass (its value "
                     "is in the results)", dec.evidence, dec.override)
    elif dec.kind == "fixed":
        what = "never learned" if dec.value is None else f"fixed at sigma^2 = {_short(dec.value)}"
        intro.assume(f"decoder variance {what}", dec.evidence, dec.override)
    else:
        intro.assume(f"decoder variance {dec.name} is a {dec.param} ({dec.kind})", dec.evidence, dec.override)


def _autoencoder_kl_assumptions(intro: Introspection, module: AutoencoderKLAdapter, config_from: str) -> None:
    """Spatial latents, the config's source and the pixel range diffusers expects."""
    intro.latent_shape = list(module.latent_shape)
    c, h, w = module.latent_shape
    intro.notes.append(f"spatial latents: {c} channels x {h} x {w} positions = H {c * h * w}, from "
                       "encode(x).latent_dist (mean, logvar); collapse also reports each channel")
    intro.assume(f"architecture from {config_from}", "diffusers builds AutoencoderKL from its config; "
                 + ("norm_num_groups 32 is diffusers' default, not in the weights" if "shapes" in config_from
                    else "saved by save_pretrained"), "a config.json beside the weights")
    intro.assume("pixels scaled to [-1, 1]", "diffusers' AutoencoderKL is trained on [-1, 1] images; data outside "
                 "that range is refused", "rescale the data")


def _short(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else f"{len(value)} values" if isinstance(value, list) else "?"


class _PythaeNets(nn.Module):
    """pythae's custom encoder and decoder (trusted pickles) under the names its state_dict uses."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder


def _pythae_module(raw: RawCheckpoint) -> nn.Module:
    if "encoder" not in raw.meta or "decoder" not in raw.meta:
        raise CheckpointError("pythae folder with only one custom network pickled; pass --model FILE.py:NAME")
    module = _PythaeNets(raw.meta["encoder"], raw.meta["decoder"])
    load_strict(module, raw.state, raw.prefix, "pythae model.pt")
    return module


__all__ = ["LoadOptions", "LoadedModel", "inspect_checkpoint", "load_checkpoint", "load_model", "save_checkpoint",
           "wrap_module"]
