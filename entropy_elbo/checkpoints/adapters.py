"""`ModuleAdapter`: any torch module with its own methods meeting the `GaussianVAE` protocol.

The module (the user's class, TorchScript, a trusted pickle, a peer library's class) runs through its own
`encode`/`decode` (or `encoder`/`decoder`, pythae style, or `forward`); `plan_module` runs it once on a probe
batch to decide where the mean and the variances come out: named parameters, hooked sub-modules or the
methods' extra outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from entropy_elbo.checkpoints.guard import model_code, owner_name
from entropy_elbo.checkpoints.introspect import Finding, last, to_log_var, variance_value
from entropy_elbo.checkpoints.outputs import (
    NotGaussian,
    ambiguous_three,
    expand,
    output_index,
    returns_distribution,
    sample_first,
    sibling_heads,
    through_heads,
)
from entropy_elbo.checkpoints.traced import PREFIX, reader, traced_via
from entropy_elbo.errors import CheckpointError, ModelError
from entropy_elbo.models.protocol import VAEBase


def _tensors(out: object) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for t in out if isinstance(t, Tensor)]
    return []


def _field(out: object, name: str) -> Tensor | None:
    if isinstance(out, dict) and isinstance(out.get(name), Tensor):
        return out[name]
    value = getattr(out, name, None)
    return value if isinstance(value, Tensor) else None


@dataclass
class ModulePlan:
    """How to call a module and where its variances are: decided once by `plan_module`, with evidence."""

    encode_via: str  # "encode" | "encoder" | "forward"
    decode_via: str | None  # "decode" | "decoder" | None (no decoder callable found)
    encoder: Finding  # kind: head (hooked) | constant (parameter) | output (method's second output)
    decoder: Finding  # kind: scalar / per-dim (parameter) | network (hook or output) | fixed
    dec_source: str  # "param" | "hook" | "output" | "fixed"
    h: int
    d: int
    mean_field: str | None = None  # pythae: "embedding"
    mean_index: int = 0  # positions of mean and variance among the tensors the encoder call returns
    var_index: int = 1
    split: bool = False  # one (B, 2H) encoder output: mean, then variance (the authors' verification VAEs)
    output: str | None = None  # applied to decode()'s output to give the mean (logits read through a sigmoid)
    dist: bool = False  # the encoder returns a torch.distributions Gaussian: its variance is exact, not a guess
    refusal: str | None = None  # the decoder returns a non-Gaussian distribution (named): no likelihood applies
    image_shape: tuple[int, ...] | None = None  # flat rows (B, D) reshaped to (B, C, H, W) for a Conv2d model
    traced: str | None = None  # how the heads were found from forward()'s output (traced.py): said in a note


class ModuleAdapter(VAEBase):
    """Any torch module meeting the protocol through its own methods and the plan's variance sources."""

    prior_key: str | None = None  # a learned prior log-variance (VAE-2's logalpha2)

    @property
    def prior_log_var(self) -> Tensor | None:
        return None if self.prior_key is None else self._named(self.prior_key).reshape(-1)

    def __init__(self, module: nn.Module, plan: ModulePlan) -> None:
        super().__init__()
        self.module = module
        self.plan = plan
        self.latent_dim = plan.h
        self.decoder_variance = plan.decoder.kind  # type: ignore[assignment]
        self._captured: dict[str, Tensor] = {}
        self._capturing = False  # hooks record only the adapter's own calls, never the user's training steps
        for finding in (plan.encoder, plan.decoder):
            if finding.kind in ("head", "network") and (finding is plan.encoder or plan.dec_source == "hook"):
                self._hook(finding.name)

    def _hook(self, name: str) -> None:
        try:
            sub = self.module.get_submodule(name)
        except AttributeError:
            raise CheckpointError(f"sub-module {name!r} not found in the model") from None

        def keep(_m: nn.Module, _i: object, out: object) -> None:
            if not self._capturing:
                return
            ts = _tensors(out)
            self._captured[name] = ts[0] if ts else out

        sub.register_forward_hook(keep)

    def _named(self, name: str) -> Tensor:
        for k, v in [*self.module.named_parameters(), *self.module.named_buffers()]:
            if k == name:
                return v
        raise CheckpointError(f"parameter {name!r} not found in the model")

    def _capture(self, fn, arg: Tensor, via: str) -> object:  # noqa: ANN001
        """The model's own fn(arg) (one-line errors), the variance hooks recording what their sub-modules return."""
        self._captured.clear()
        self._capturing = True
        try:
            return run_foreign(fn, arg, via)
        finally:
            self._capturing = False

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        enc = self.plan.encoder
        x = x if self.plan.image_shape is None else x.reshape(len(x), *self.plan.image_shape)  # (B, C, H, W)
        out = expand(self._capture(_encoder_fn(self.module, self.plan.encode_via), x, self.plan.encode_via),
                     self.plan.encode_via)
        mean = _field(out, self.plan.mean_field) if self.plan.mean_field else None
        ts = _tensors(out)
        nu = mean if mean is not None else ts[self.plan.mean_index]
        if self.plan.split:
            h = self.plan.h
            return nu[:, :h], to_log_var(nu[:, h:], enc.param or "logvar")
        if enc.kind == "constant":
            return nu, self.encoder_log_var_constant.expand_as(nu)
        if enc.kind == "head":
            raw = self._captured.get(enc.name)
            if raw is None:
                raise ModelError(f"encoder variance head {enc.name!r} did not run during {self.plan.encode_via}()")
        else:
            raw = _field(out, enc.name) if enc.name == "log_covariance" else ts[self.plan.var_index]
        h, via = self.plan.h, self.plan.encode_via
        if nu.dim() != 2 or nu.shape[1] != h:
            raise ModelError(f"{via}() returned a mean of shape {tuple(nu.shape)} on a batch of {len(x)} rows, not "
                             f"(B, {h}) as on the probe batch; outputs that change shape cannot be read")
        log_tau2 = to_log_var(raw, enc.param or "logvar")
        if h > 1 and tuple(log_tau2.shape) == (nu.shape[0], 1):  # isotropic: one tau per data point
            return nu, log_tau2.expand_as(nu)
        if log_tau2.shape != nu.shape:
            raise ModelError(f"{via}() returned a variance of shape {tuple(log_tau2.shape)} beside a mean of shape "
                             f"{tuple(nu.shape)}; expected the same shape, or (B, 1) for one shared by all latents "
                             "(pick the output with --encoder-var 'encode()[k]', its storage with --encoder-var-param)")
        return nu, log_tau2

    @property
    def encoder_log_var_constant(self) -> Tensor | None:
        enc = self.plan.encoder
        if enc.kind != "constant":
            return None
        return to_log_var(self._named(enc.name), enc.param or "logvar").reshape(-1)

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.plan.decode_via is None:
            raise ModelError("the model has no decode() method or decoder sub-module; pass --samples 0 for the "
                             "entropy ELBO alone, or --model FILE.py:NAME")
        fn = self.module.decode if self.plan.decode_via == "decode" else self.module.decoder
        out = expand(self._capture(fn, z, self.plan.decode_via), self.plan.decode_via)
        recon = _field(out, "reconstruction")
        ts = _tensors(out)
        mu = recon if recon is not None else ts[0]
        if self.plan.output and self.plan.output != "linear":
            from entropy_elbo.checkpoints.mlp import OUTPUTS  # mlp imports this module

            mu = OUTPUTS[self.plan.output](mu)
        log_var = self._decoder_log_var(z, ts)
        if self.plan.image_shape is not None:  # images back to the flat rows they came from: (B, D)
            return mu.flatten(1), log_var.flatten(1) if log_var.dim() > 1 and len(log_var) == len(mu) else log_var
        return mu, log_var

    def decoder_log_var(self, z: Tensor) -> Tensor:
        if self.plan.dec_source in ("hook", "output"):
            return self.decode(z)[1]
        return self._decoder_log_var(z, [])

    def _decoder_log_var(self, z: Tensor, ts: list[Tensor]) -> Tensor:
        dec, source = self.plan.decoder, self.plan.dec_source
        if source == "fixed":
            return torch.tensor(math.log(dec.value) if dec.value else 0.0, dtype=torch.float64, device=z.device)
        if source == "param":
            raw = self._named(dec.name)
            return to_log_var(raw, dec.param or "logvar").reshape(-1 if raw.numel() > 1 else ())
        raw = self._captured.get(dec.name) if source == "hook" else ts[1]
        if raw is None:
            raise ModelError(f"decoder variance network {dec.name!r} did not run during {self.plan.decode_via}()")
        return to_log_var(raw, dec.param or "logvar")


def run_foreign(fn, batch: Tensor, via: str, hint: str = ""):  # noqa: ANN001, ANN201
    """Call the model's own code (a --model class, TorchScript, a trusted pickle) under `guard.model_code`:
    whatever it raises or exits with, one line naming its class, the method and the batch's shape."""
    with model_code(owner_name(fn), via, hint, where=f" on a batch of shape {tuple(batch.shape)}"):
        return fn(batch)


def plan_module(module: nn.Module, state: dict[str, Tensor], encoder: Finding | None, decoder: Finding,
                probe: Tensor, explicit: bool = False) -> ModulePlan:
    """Run the module once on `probe` to learn H, D, and where mean and variances come out; `explicit`: the
    decoder variance was given by a flag (else a named parameter beside a decode() variance is ambiguous)."""
    encode_via = "encode" if hasattr(module, "encode") else "encoder" if hasattr(module, "encoder") else "forward"
    d = int(probe[0].numel())
    heads = sibling_heads(module)
    if heads is not None:  # encoder, then fc_mu and fc_var beside it: the path the model's own forward takes
        encode_via = f"encoder+{'+'.join(heads)}"
    decode_via = "decode" if hasattr(module, "decode") else "decoder" if hasattr(module, "decoder") else None
    traced = None if heads is not None else traced_via(module, encode_via, probe, lambda w: decode_via is not None
                                                         and _decodes(module, decode_via, probe.new_zeros(2, w), d))
    encode_via = traced[0] if traced else encode_via
    hint = "; check --model-kwargs or the data's shape"
    with torch.no_grad():
        first = run_foreign(_encoder_fn(module, encode_via), probe, encode_via, hint)
    dist, out = returns_distribution(first), expand(first, encode_via)
    mean_field = "embedding" if _field(out, "embedding") is not None else None
    ts = _tensors(out)
    mean_index, var_index = _forward_pair(ts, probe) if encode_via == "forward" else \
        _method_pair(module, encode_via, encoder, ts, probe)
    nu = _field(out, "embedding") if mean_field else (ts[mean_index] if ts else None)
    if nu is None or nu.dim() != 2:
        raise CheckpointError(f"{encode_via}() returned {type(out).__name__}; expected (mean, variance) tensors of "
                              "shape (B, H) (the variance stored as --encoder-var-param P, log-variance by default), a "
                              "torch.distributions Normal, or an object with embedding and log_covariance")
    plan = ModulePlan(encode_via, decode_via, encoder, decoder, "fixed", int(nu.shape[1]), d, mean_field, mean_index,
                      var_index, dist=dist, traced=traced[1] if traced else None)
    if encoder is None and len(ts) == 1 and mean_field is None and plan.h % 2 == 0 and decode_via is not None:
        plan = _split_output(module, plan, probe)
    plan.encoder = _encoder_output(module, plan, out, ts, nu)
    return _plan_decoder(module, plan, probe, explicit)


def _split_output(module: nn.Module, plan: ModulePlan, probe: Tensor) -> ModulePlan:
    """One (B, 2H) encoder output whose first half the decoder takes: mean, then variance (the authors' VAEs)."""
    encode_via, d = plan.encode_via, plan.d
    if not _decodes(module, plan.decode_via, torch.zeros(probe.shape[0], plan.h // 2), d):
        return plan
    noise = any(last(k) == "noise_std" for k, _ in module.named_parameters())
    h = plan.h // 2
    encoder = Finding("output", f"second half of {encode_via}()'s output",
                      "softplus_std" if noise else "logvar",
                      f"{encode_via}() returns one tensor of {2 * h} = 2 x {h} values per row and the decoder "
                      f"takes {h}: first half the mean, second half the variance, "
                      + ("a softplus std (the paper authors' verification/VAE.py convention, with noise_std)"
                         if noise else "read as a log-variance (the common default)"),
                      "--encoder-var-param P")
    return replace(plan, encoder=encoder, h=h, split=True)


def _encoder_output(module: nn.Module, plan: ModulePlan, out: object, ts: list[Tensor], nu: Tensor) -> Finding:
    """Where the encoder variance comes out: the method's own output where it gives one (a named head then
    counts only through it), else the named head or parameter."""
    encoder, encode_via, var_index, h = plan.encoder, plan.encode_via, plan.var_index, plan.h
    if plan.dist:
        return Finding("output", f"{encode_via}()'s distribution", "logvar", f"{encode_via}() returns a torch."
                       "distributions Gaussian: its loc is the mean and its variance is read as what it is (exact, "
                       "no parameterization guessed)", "none: the distribution says what it is")
    scripted = isinstance(module, torch.jit.ScriptModule)
    pythae_var = plan.mean_field is not None and _field(out, "log_covariance") is not None
    second = ts[var_index] if len(ts) > var_index and plan.mean_field is None else None
    isotropic = second is not None and h > 1 and tuple(second.shape) == (nu.shape[0], 1)
    fits = second is not None and (second.shape == nu.shape or isotropic)
    method_var = encode_via != "forward" and (pythae_var or fits)
    if encoder is not None and encoder.kind == "head" and (scripted or method_var):
        why = ("TorchScript cannot be hooked" if scripted and not method_var else
               "the model's own method is authoritative: whatever it applies after that layer counts")
        name = "log_covariance" if pythae_var else f"{encode_via}()[{var_index}]"
        encoder = Finding("output", name, encoder.param, f"{encoder.evidence}; {why}, so {encode_via}()'s variance "
                          f"output is read (as {encoder.param}), not the layer's raw output", encoder.override)
    if encoder is not None:
        return encoder
    if pythae_var:
        return Finding("output", "log_covariance", "logvar", f"{encode_via}() returns an object with "
                       "embedding and log_covariance (pythae convention: log-variance)",
                       "--encoder-var NAME --encoder-var-param P")
    if fits:
        shape = f"(B, 1): one log-variance per data point shared by all {h} latents (isotropic), broadcast " \
            "over them" if isotropic else f"(B, {h})"
        return Finding("output", f"{encode_via}()[{var_index}]", "logvar", f"{encode_via}() returns {len(ts)} "
                       f"tensors, a mean of shape (B, {h}) and output {var_index} of shape {shape}: [mean, "
                       "log-variance] (PyTorch-VAE convention)", "--encoder-var NAME --encoder-var-param P")
    raise CheckpointError(f"encoder variance: {encode_via}() returns {len(ts)} tensor(s) and no layer is "
                          "named like a variance head; name it with --encoder-var NAME")


def _plan_decoder(module: nn.Module, plan: ModulePlan, probe: Tensor, explicit: bool) -> ModulePlan:
    """Run the decoder once on zero latents: check its output's size and find where its variance comes out."""
    decoder, decode_via, d = plan.decoder, plan.decode_via, plan.d
    scripted = isinstance(module, torch.jit.ScriptModule)
    z = torch.zeros(probe.shape[0], plan.h, dtype=probe.dtype, device=probe.device)
    dec_source = {"scalar": "param", "per-dim": "param", "fixed": "fixed", "network": "hook"}[decoder.kind]
    if decode_via is not None:
        dfn = module.decode if decode_via == "decode" else module.decoder
        with torch.no_grad():
            dout = run_foreign(dfn, z, decode_via)
        try:
            dout = expand(dout, decode_via)
        except NotGaussian as err:  # the encoder still gives collapse metrics
            return replace(plan, refusal=str(err), decoder=Finding("fixed", None, "var", str(err), "none", value=1.0))
        dts = _tensors(dout)
        mean = _field(dout, "reconstruction")
        mean = mean if mean is not None else (dts[0] if dts else None)
        if mean is None or mean[0].numel() != d:
            got = "no tensor" if mean is None else f"{mean[0].numel()} values per row"
            raise CheckpointError(f"{decode_via}() returned {got}; expected {d} (the input's size)")
        if decoder.kind == "network" and scripted:
            dec_source = "output"
        if decoder.kind in ("scalar", "per-dim") and not explicit and len(dts) >= 2 and plan.mean_field is None \
                and dts[1][0].numel() in (1, d):
            raise CheckpointError(f"decoder variance: several candidates (parameter {decoder.name!r}, {decode_via}()'s "
                                  f"second output of shape {tuple(dts[1].shape)}); pick one with --decoder-var NAME "
                                  f"or --decoder-var '{decode_via}()[1]'")
        if decoder.kind == "fixed" and decoder.name is None and len(dts) >= 2 and plan.mean_field is None:
            decoder, dec_source = _decoder_output(dfn, z, dts[1], decode_via, len(dts), d, decoder.override), "output"
    elif decoder.kind == "network" and scripted:
        raise CheckpointError("decoder variance network: TorchScript module without decode(); pass --model")
    return replace(plan, decoder=decoder, dec_source=dec_source)


def _decodes(module: nn.Module, via: str, z: Tensor, d: int) -> bool:
    """Whether the module's decoder runs on latents `z` and returns d values per row."""
    fn = module.decode if via == "decode" else module.decoder
    try:
        with torch.no_grad():
            ts = _tensors(expand(run_foreign(fn, z, via), via))
    except ModelError:  # a probe of the model's own code: not this width
        return False
    return bool(ts) and ts[0].dim() >= 2 and ts[0][0].numel() == d


def _decoder_output(dfn, z: Tensor, second: Tensor, via: str, count: int, d: int,  # noqa: ANN001
                    override: str) -> Finding:
    """decode() returning (mean, log-variance): constant in z (scalar / per-dim) or a network of z."""
    with torch.no_grad():
        other = _tensors(expand(run_foreign(dfn, torch.randn_like(z), via), via))[1]
    varies = other.shape != second.shape or not torch.equal(other, second)
    if not varies and second.dim() > 1 and second.shape[0] == z.shape[0]:  # batched but the same in every row
        varies = not torch.equal(second, second[:1].expand_as(second))
        second = second[0]
    kind = "network" if varies else "scalar" if second.numel() == 1 else "per-dim" if second.numel() == d else None
    if kind is None:
        raise CheckpointError(f"{via}()'s second output has shape {tuple(second.shape)}: neither 1 nor D={d} values "
                              "nor one per row; name the variance with --decoder-var")
    value = None if varies else variance_value(second, "logvar", f"{via}()[1]")
    return Finding(kind, f"{via}()[1]", "logvar", f"{via}() returns {count} tensors: [mean, log-variance] "
                   f"(entropy-elbo's protocol); the second {'varies' if varies else 'does not vary'} with z", override,
                   value=value)


def _method_pair(module: nn.Module, via: str, encoder: Finding | None, ts: list[Tensor],
                 probe: Tensor) -> tuple[int, int]:
    """Where the mean and the variance are among an encode()'s tensors: (0, 1), or after the sample when three
    same-shaped outputs come with the sample first (it changes between calls), or as --encoder-var 'encode()[k]'
    says (the mean just before)."""
    given = output_index(encoder.name if encoder is not None else None)
    if given is not None:
        return max(given - 1, 0), given
    fn = _encoder_fn(module, via)

    def again() -> list[Tensor]:
        with torch.no_grad():
            return _tensors(expand(fn(probe), via))

    three = len(ts) >= 3 and ts[0].dim() == 2 and all(t.shape == ts[0].shape for t in ts[:3])
    if not three:
        return 0, 1
    sample = sample_first(again, ts)
    if sample is None:
        raise ambiguous_three(via)
    rest = [i for i in range(3) if i != sample]
    return rest[0], rest[1]


def _encoder_fn(module: nn.Module, via: str):  # noqa: ANN202
    if via.startswith("encoder+"):
        return through_heads(module, tuple(via.split("+")[1:]))
    if via.startswith(PREFIX):
        return reader(module, via)
    return module.encode if via == "encode" else module.encoder if via == "encoder" else module


def _forward_pair(ts: list[Tensor], x: Tensor) -> tuple[int, int]:
    """forward() returning several tensors: the two (B, H) ones that are not the reconstruction."""
    shapes = [tuple(t.shape) for t in ts]
    rows = [i for i, t in enumerate(ts) if t.dim() == 2 and t.shape[0] == x.shape[0] and t.shape != x.shape]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i in rows:
        by_shape.setdefault(shapes[i], []).append(i)
    pairs = [v for v in by_shape.values() if len(v) == 2]
    if len(pairs) != 1 or any(len(v) > 2 for v in by_shape.values()):
        raise CheckpointError(f"the model has no encode() or encoder, and forward() returns tensors of shapes "
                              f"{shapes}: mean and variance cannot be told apart; pass --model FILE.py:NAME whose "
                              "encode() returns (mean, variance), with --encoder-var-param P for how it is stored")
    return pairs[0][0], pairs[0][1]

