"""Readings that a model's own code leaves open, scored on the data like the MLP readings (issue #22).

A method's second output is a variance of some parameterization (log-variance by the common convention, but a
std in Pyro's and many tutorials' style: `return loc, torch.exp(h)`), and what decode() returns may be logits
that the training loss passed through a sigmoid. With data rows at hand each reading is scored by
`readings.choose`: the convention is kept unless another reading clearly beats it, and a tie stops with the
candidates and their flags. A torch.distributions output says what it is and is never scored; a flag that cannot
apply to the reading at hand is an error.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from entropy_elbo.checkpoints.adapters import ModuleAdapter, ModulePlan
from entropy_elbo.checkpoints.likelihood import sigmoid_reason
from entropy_elbo.checkpoints.outputs import output_index
from entropy_elbo.checkpoints.readings import Reading, choose
from entropy_elbo.errors import CheckpointError, ModelError

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.options import LoadOptions

ENC_PARAMS = ("logvar", "logstd", "std", "var", "softplus_std")
A_SANE = 0.5  # max|a_h - 1| of a reading that may overturn the convention: stationarity (a_h = 1) is evidence too
Assumed = list[tuple[str, str, str]]


def read_outputs(module: nn.Module, plan: ModulePlan, options: LoadOptions) -> tuple[ModulePlan, Assumed]:
    """The plan with the encoder's variance parameterization and the decoder output's meaning decided: by a flag,
    by a distribution's class, or scored on `options.rows`; the assumptions to state."""
    for flag, value in (("--activation", options.activation), ("--head-activation", options.head_activation)):
        if value is not None:
            raise CheckpointError(f"{flag}: applies to a plain MLP state_dict read from its shapes; this model runs "
                                  "its own code (its own layers and activations); drop the flag")
    if plan.dist and options.encoder_var_param:
        raise CheckpointError(f"--encoder-var-param {options.encoder_var_param}: {plan.encode_via}() returns a "
                              "torch.distributions Gaussian whose variance is exact; drop the flag")
    enc, param = plan.encoder, options.encoder_var_param
    if param and enc.kind == "output" and not plan.dist and plan.mean_field is None and "()[" in (enc.name or ""):
        plan = replace(plan, encoder=replace(enc, param=param, evidence=f"{enc.evidence}; read as {param}: set by "
                                             f"--encoder-var-param {param}"))
    rows = options.rows
    fits = rows is not None and rows[0].numel() == plan.d and plan.refusal is None  # scores need a Gaussian decoder
    x = torch.as_tensor(rows).float() if fits else None
    peer = plan.mean_field is not None  # pythae: the reconstruction is the mean by definition (a BCE config is refused)
    if x is not None and not peer and _bernoulli(module, plan, options, x):  # refused by adapt's likelihood check; no
        return plan, []  # score means anything under a Gaussian reading of a Bernoulli decoder
    if x is not None and _open_encoder(plan, options):
        plan = _score_encoder(module, plan, x)
    return _decoder_output(module, plan, options, x)


def _bernoulli(module: nn.Module, plan: ModulePlan, options: LoadOptions, x: Tensor) -> bool:
    """A decoder with no learned variance and a sigmoid output on data in [0, 1] (likelihood.sigmoid_reason)."""
    if plan.decoder.kind != "fixed" or options.output_activation == "sigmoid":
        return False
    try:
        return sigmoid_reason(ModuleAdapter(module, plan), x, None) is not None
    except (RuntimeError, ValueError, CheckpointError, ModelError):
        return False


def _open_encoder(plan: ModulePlan, options: LoadOptions) -> bool:
    """Whether the encoder's variance is a method's bare tensor output whose parameterization nobody gave."""
    enc = plan.encoder
    return (enc.kind == "output" and not plan.dist and plan.mean_field is None and "()[" in (enc.name or "")
            and options.encoder_var_param is None
            and (options.encoder_var is None or output_index(options.encoder_var) is not None))


def _score_encoder(module: nn.Module, plan: ModulePlan, x: Tensor) -> ModulePlan:
    enc = plan.encoder
    params = [enc.param, *(p for p in ENC_PARAMS if p != enc.param)]

    def build(r: Reading) -> ModuleAdapter:
        return ModuleAdapter(module, replace(plan, encoder=replace(enc, param=r.enc_param)))

    chosen, scored, evidence = choose(build, [Reading("", "", enc_param=p) for p in params], x,
                                      f"{enc.param} (the convention for {enc.name})", flat=False)
    by = {c.reading.enc_param: c for c in scored}
    win, usual = by[chosen.enc_param], by[enc.param]
    if chosen.enc_param != enc.param and not (win.a_far <= A_SANE and win.a_far < usual.a_far):
        evidence += (f"; but that reading's max|a_h-1| is {win.a_far:.3g} (a trained encoder has a_h near 1), so "
                     f"the convention {enc.param} is kept")
        chosen = Reading("", "", enc_param=enc.param)
    return replace(plan, encoder=replace(enc, param=chosen.enc_param, evidence=f"{enc.evidence}; {evidence}",
                                         override="--encoder-var-param P"))


@torch.no_grad()
def _decoder_output(module: nn.Module, plan: ModulePlan, options: LoadOptions,
                    x: Tensor | None) -> tuple[ModulePlan, Assumed]:
    """decode()'s output as the mean, or as logits whose sigmoid is the mean: the flag, else scored when the data
    lie in [0, 1] and the outputs do not."""
    flag = options.output_activation
    if flag is not None:
        what = "the mean" if flag == "linear" else f"{flag}(output) is the mean"
        return replace(plan, output=flag), [(f"decoder mean = {plan.decode_via}()'s output read as {what}",
                                             "set by --output-activation", "--output-activation")]
    peer = plan.mean_field is not None  # pythae's reconstruction is the mean by its library's definition
    if x is None or peer or plan.decode_via is None or float(x.min()) < 0 or float(x.max()) > 1:
        return plan, []
    adapter = ModuleAdapter(module, plan)
    try:
        mu = adapter.decode(adapter.encode(x[:256])[0])[0]
    except Exception:  # noqa: BLE001 -- the estimate's own checks say why the model cannot run on these rows
        return plan, []
    outside = float(((mu < 0) | (mu > 1)).float().mean())
    if outside < 0.05:
        return plan, []

    def build(r: Reading) -> ModuleAdapter:
        return ModuleAdapter(module, replace(plan, output=r.output))

    chosen, _, evidence = choose(build, [Reading("", "linear"), Reading("", "sigmoid")], x,
                                 f"{plan.decode_via}()'s output is the mean (the model's own code)", flat=False)
    note = (f"{outside:.0%} of {plan.decode_via}()'s outputs on the data's encoder means lie outside the data's range "
            f"[0, 1]; {evidence}")
    what = "sigmoid(output), the output read as logits" if chosen.output == "sigmoid" else "the output itself"
    return replace(plan, output=chosen.output), [(f"decoder mean = {what}", note,
                                                  "--output-activation linear|sigmoid")]
