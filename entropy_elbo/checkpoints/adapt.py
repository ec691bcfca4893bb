"""`adapt`: a raw checkpoint as a GaussianVAE, every variance decided once with its evidence, for every source.

The table (sources.py) picks the source that builds the module and the one whose loss says what fixed
variance it implies; the steps here are shared: the variance findings, the prior, the assumptions every
reading makes, and the likelihood's refusal (likelihood.py).
"""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor, nn

from entropy_elbo.checkpoints.introspect import Finding, Introspection, find_encoder_variance, find_prior
from entropy_elbo.checkpoints.likelihood import declared_gaussian, likelihood_refusal, refuse_other_priors
from entropy_elbo.checkpoints.options import LoadOptions
from entropy_elbo.checkpoints.outputs import output_index
from entropy_elbo.checkpoints.raw import RawCheckpoint
from entropy_elbo.checkpoints.source import Built, Source
from entropy_elbo.checkpoints.sources import home, pick


def adapt(raw: RawCheckpoint, options: LoadOptions, source: str,
          probe: Tensor | None = None) -> tuple[nn.Module, Introspection]:
    """Wrap what `read_checkpoint` found into a GaussianVAE, deciding every variance with its evidence (a module is
    run once on `probe` rows, by default random ones of its input shape)."""
    refuse_other_priors(raw.state)
    builder, built = pick(raw, options, source)
    own = home(raw)
    encoder = _encoder_finding(built, own, options)
    prior = find_prior(built.state)
    wrapped = builder.wrap(built, raw, options, source, encoder, prior, probe)
    _implied_variance(wrapped.decoder, own, raw, wrapped.d)
    if prior is not None:
        wrapped.model.prior_key = prior.name  # VAE-2: p(z) = N(0, A) with learned diagonal A
    notes = [*wrapped.notes, *([f"key prefix {raw.prefix!r} stripped"] if raw.prefix else []),
             *([f"found the weights under {raw.meta['found_under']}"] if raw.meta.get("found_under") else [])]
    intro = Introspection(source, raw.fmt, built.kind, wrapped.h, wrapped.d, wrapped.decoder, wrapped.encoder, prior,
                          notes, unresolved=wrapped.unresolved)
    builder.assume(intro, built, raw)
    _variance_assumptions(intro, built.module is not None, options.optimal_variance, own.prior_evidence)
    for item in wrapped.assumed:
        intro.assume(*item)
    intro.refusal = wrapped.refusal or likelihood_refusal(raw, built.state, wrapped.model, wrapped.decoder,
                                                          wrapped.d, options, wrapped.output)
    if intro.refusal is None and options.output_activation == "sigmoid":  # the flag lifted a refusal: say so
        intro.declared = declared_gaussian(likelihood_refusal(raw, built.state, wrapped.model, wrapped.decoder,
                                                              wrapped.d, replace(options, output_activation=None),
                                                              wrapped.output))
        intro.notes.extend([f"warning: {intro.declared}"] if intro.declared else [])
    return wrapped.model, intro


def _encoder_finding(built: Built, own: Source, options: LoadOptions) -> Finding | None:
    """The encoder variance by name or flag; a peer library's module gives its own (pythae, diffusers)."""
    if output_index(options.encoder_var) is not None:  # a method's output k (the mean is output k - 1)
        return Finding("output", options.encoder_var, options.encoder_var_param or "logvar", "the variance is "
                       f"{options.encoder_var}, the mean the output before it (--encoder-var)",
                       "--encoder-var 'encode()[k]' --encoder-var-param P")
    encoder = find_encoder_variance(built.state, name=options.encoder_var, param=options.encoder_var_param)
    if built.module is not None and options.encoder_var is None:
        encoder = own.encoder_variance(encoder)
    if encoder is not None and options.encoder_var is None and options.encoder_var_param:
        encoder.evidence += f" (parameterization set by --encoder-var-param {options.encoder_var_param})"
    return encoder


def _implied_variance(decoder: Finding, own: Source, raw: RawCheckpoint, d: int) -> None:
    """A fixed variance the source's training loss implies (pythae's config, PyTorch-VAE's kld_weight): say it."""
    if decoder.kind != "fixed" or decoder.value is not None:
        return
    implied = own.implied_variance(raw, d)
    if implied is not None:
        decoder.implied, decoder.evidence = implied


def _variance_assumptions(intro: Introspection, has_methods: bool, optimal: bool = False,
                          peer: str | None = None) -> None:
    """The assumptions every reading makes: the prior (`peer`: why the source's library says N(0, I)), the
    decoder mean, and both variances' parameterizations; an `optimal` sigma^2 is stated without a number: it is
    chosen from the data after the pass."""
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


def _short(value: object) -> str:
    """A variance's value in a sentence: the number, or how many there are."""
    return f"{value:.6g}" if isinstance(value, float) else f"{len(value)} values" if isinstance(value, list) else "?"
