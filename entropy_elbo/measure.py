"""The front door: `estimate`, `collapse`, `compare` and `inspect` of a checkpoint (or a live module) over data.

Each opens its source through `opening.open_checkpoint`, which judges it on the data, then runs one streaming pass:
in one process, or under torchrun (several processes, chosen here from the environment) each over its own block of
rows with the float64 sums added across processes. Every figure is in nats per data point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from entropy_elbo import compare as comparing
from entropy_elbo import distributed
from entropy_elbo.checkpoints import LoadOptions, load_model
from entropy_elbo.checkpoints.introspect import Introspection
from entropy_elbo.devices import resolve_device
from entropy_elbo.elbo import (
    Estimate,
    estimate_without_data,
    with_iwae,
)
from entropy_elbo.elbo import estimate as estimate_batches
from entropy_elbo.encoder_check import check_encoder
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.evidence import reading_evidence
from entropy_elbo.latents import ACTIVE_THRESHOLD, LUCAS_DELTA, LUCAS_EPSILON, CollapseResult, check_settings
from entropy_elbo.latents import collapse as collapse_batches
from entropy_elbo.montecarlo import iwae_bound
from entropy_elbo.opening import Opened, Progress, Rows, load_options, no_progress, open_checkpoint, scored_on
from entropy_elbo.pass_checks import check_samples
from entropy_elbo.stationarity import at_optimal_variance

Source = str | Path | nn.Module
OnOpen = Callable[[Opened], None] | None  # told the opened model before the pass (the CLI says how it was read)
OnNote = Callable[[str], None] | None  # notes on the data and the forecast of a long pass


def join_ranks(device: str | torch.device) -> tuple[distributed.Context | None, torch.device]:
    """Under torchrun with several processes: this rank, joined to the group, and its device; else (None, device)."""
    dev = resolve_device(str(device))
    ctx = distributed.context_from_env()
    if ctx is None or ctx.world_size == 1:
        return None, dev
    return ctx, distributed.setup(ctx, dev)


def is_main_process() -> bool:
    """Process 0 of a torchrun group, or the only process: the one that reports."""
    ctx = distributed.context_from_env()
    return ctx is None or ctx.is_main


def _told(opened: Opened, on_open: OnOpen, on_note: OnNote) -> None:
    if on_note is not None and is_main_process():
        for note in opened.notes:
            on_note(note)
    if on_open is not None:
        on_open(opened)


def estimate(source: Source, data: object = None, *, samples: int = 100, seed: int = 0, iwae: int = 0,
             device: str | torch.device = "auto", batch_size: int | None = None, key: str | None = None,
             preprocess: str = "auto", threads: int | None = None, progress: Progress = no_progress,
             on_open: OnOpen = None, on_note: OnNote = None, options: LoadOptions | None = None,
             rows: str | None = None, **flags: object) -> Estimate:
    """Entropy ELBO (Thm. 2, eq. 14), Monte Carlo ELBO (eq. 2, S = `samples`), stationarity (r, a_h; eq. 76) and,
    with `iwae` = K > 0, the importance-weighted bound of `source` over `data`, in nats per data point.

    `source`: a checkpoint file, a run folder, or a live nn.Module; `data`: a path or named set, an array or tensor
    of rows (N, ...), or an iterable of batches; `rows`: "train", "holdout" or "all" of a run's data (default: the
    rows it held out, when it recorded a split); `flags`: the checkpoint options named like the CLI's flags
    (decoder_variance=, model=, activation=, ...). With no data, a linear VAE's entropy ELBO from its parameters
    alone (samples=0; Cor. 1, eq. 20). A refusal raises EntropyElboError with the CLI's one-line message.
    """
    check_samples(samples)
    opts = load_options(options, flags)
    if data is None:
        return estimate_from_parameters(source, samples, iwae, opts, device)
    ctx, dev = join_ranks(device)
    try:
        opened = distributed.all_or_none(ctx, dev, lambda: open_checkpoint(
            source, data, key=key, device=dev, batch_size=batch_size, samples=samples, preprocess=preprocess,
            threads=threads, rows=rows, options=opts))
        _told(opened, on_open, on_note)
        est = (_estimate_sharded(opened, ctx, dev, samples, seed, iwae) if ctx is not None else
               _estimate_here(opened, dev, samples, seed, iwae, progress, on_note))
    finally:
        distributed.teardown()
    return _as_read(est, opened, opts)


def _estimate_here(opened: Opened, dev: torch.device, samples: int, seed: int, iwae: int, progress: Progress,
                   on_note: OnNote) -> Estimate:
    """The pass in this process, with a forecast when it will be long and progress over rows x samples."""
    from entropy_elbo.forecast import forecast_message

    n = opened.rows_count()
    if n is not None and on_note is not None:
        ahead = forecast_message(opened.model, opened.x, samples=samples, iwae=iwae, device=dev)
        if ahead is not None:
            on_note(ahead)
    with progress((n or 0) * (max(samples, 1) + iwae), "rows x samples") as tick:
        est = estimate_batches(opened.model, opened.batches(), samples=samples, seed=seed, device=dev, on_work=tick)
        if iwae != 0:
            bound = iwae_bound(opened.model, opened.batches(), samples=iwae, seed=seed, device=dev, on_work=tick)
            est = with_iwae(est, bound.value, bound.stderr, bound.samples)
    return est


def _estimate_sharded(opened: Opened, ctx: distributed.Context, dev: torch.device, samples: int, seed: int,
                      iwae: int) -> Estimate:
    """The pass under torchrun: each process its block of rows, float64 sums added across processes."""
    x = _rows_for_ranks(opened)
    kw = {"batch_size": opened.batch_size, "seed": seed, "device": dev, "source": opened.data_name}
    est = distributed.estimate_sharded(opened.model, x, ctx, samples=samples, **kw)
    if iwae != 0:
        bound = distributed.iwae_sharded(opened.model, x, ctx, samples=iwae, **kw)
        est = with_iwae(est, bound.value, bound.stderr, bound.samples)
    return est


def _rows_for_ranks(opened: Opened) -> object:
    if opened.x is None:
        raise EntropyElboError("data: under torchrun each process reads its own block of rows; pass a file or an "
                               "array of rows, not batches")
    return opened.x


def _as_read(est: Estimate, opened: Opened, opts: LoadOptions) -> Estimate:
    """The estimate at sigma*^2 when asked for, and for a checkpoint from the wild, how it was read."""
    intro = opened.introspection
    if opts.optimal_variance:
        est = at_optimal_variance(est)
        if intro is not None:  # the sigma^2 used, not the 1 the reading started from
            intro.decoder.value = est.stationarity["sigma2"]
    if opened.row_set != "all":
        est.extra["rows"] = opened.row_set  # which of the run's rows were measured (entropy_elbo.splits)
    if opened.wild:
        est.extra["checkpoint"] = intro.to_dict()
        est.assumptions = est.extra["checkpoint"]["assumptions"]
        est.warnings = [*est.warnings, *([intro.declared] if intro.declared else [])]
    return est


def estimate_from_parameters(source: Source, samples: int, iwae: int, options: LoadOptions,
                             device: str | torch.device) -> Estimate:
    """`estimate` with no data: a linear VAE's entropy ELBO from its parameters (Cor. 1, eq. 20)."""
    if samples != 0 or iwae != 0:
        raise EntropyElboError("estimate: pass --data (only --samples 0 of a linear VAE needs none)")
    if isinstance(source, nn.Module):
        raise EntropyElboError(f"data: a live {type(source).__name__} is read by running it; pass data rows")
    model = load_model(_checkpoint_file(source), device=resolve_device(str(device)), options=options).model
    d = getattr(getattr(model, "config", None), "data_dim", None)
    est = None if d is None else estimate_without_data(model, int(d))
    if est is None:
        raise EntropyElboError(f"{source}: its encoder or decoder variance depends on the data, so its entropy "
                               "ELBO needs --data (only a linear VAE's comes from its parameters alone)")
    return est


def _checkpoint_file(source: str | Path) -> Path:
    from entropy_elbo.opening import checkpoint_path

    return checkpoint_path(source)[0]


def collapse(source: Source, data: object, *, threshold: float | None = None, delta: float | None = None,
             active_threshold: float = ACTIVE_THRESHOLD, lucas_epsilon: float = LUCAS_EPSILON,
             lucas_delta: float = LUCAS_DELTA, device: str | torch.device = "auto", batch_size: int | None = None,
             key: str | None = None, preprocess: str = "auto", threads: int | None = None,
             progress: Progress = no_progress, on_open: OnOpen = None, on_note: OnNote = None,
             options: LoadOptions | None = None, rows: str | None = None, **flags: object) -> CollapseResult:
    """Which latents of `source` collapsed over `data`: the paper's entropy criterion (eq. 24), active units (Burda
    et al. 2016) and the (epsilon, delta) KL measure (Lucas et al. 2019), from one pass of the encoder alone, so a
    fixed-variance model works too. Arguments as for `estimate`."""
    check_settings(threshold, delta, active_threshold, lucas_epsilon, lucas_delta)
    settings = {"threshold": threshold, "delta": delta, "active_threshold": active_threshold,
                "lucas_epsilon": lucas_epsilon, "lucas_delta": lucas_delta}
    opts = load_options(options, flags)
    ctx, dev = join_ranks(device)
    try:
        opened = distributed.all_or_none(ctx, dev, lambda: open_checkpoint(
            source, data, key=key, device=dev, batch_size=batch_size, samples=0, needs="encoder",
            preprocess=preprocess, threads=threads, rows=rows, options=opts))
        _told(opened, on_open, on_note)
        if ctx is not None:
            result = distributed.collapse_sharded(opened.model, _rows_for_ranks(opened), ctx,
                                                  batch_size=opened.batch_size, device=dev, source=opened.data_name,
                                                  **settings)
        else:
            with progress(opened.rows_count() or 0, "rows") as tick:
                result = collapse_batches(opened.model, _counted(opened.batches(), tick), device=dev, **settings)
    finally:
        distributed.teardown()
    if opened.wild and opened.introspection.latent_shape:
        result.latent_shape = opened.introspection.latent_shape
    return result


def _counted(batches: Iterable[Rows], tick: Callable[[int], None] | None) -> Iterator[Rows]:
    """The batches, telling `tick` each one's rows as it passes."""
    for batch in batches:
        yield batch
        if tick is not None:
            tick(len(batch))


def compare(source: Source, data: object, *, sizes: Sequence[int] | None = None, repeats: int = 10,
            mc_samples: Sequence[int] = (1, 100), seed: int = 0, device: str | torch.device = "auto",
            batch_size: int | None = None, key: str | None = None, preprocess: str = "auto",
            threads: int | None = None, progress: Progress = no_progress, on_note: OnNote = None,
            options: LoadOptions | None = None, rows: str | None = None, **flags: object) -> comparing.Comparison:
    """Spread and cost of the entropy ELBO and the Monte Carlo ELBO on `repeats` random subsets of each size of the
    data's rows (Fig. 2(b), Fig. 6). Arguments as for `estimate`."""
    dev = resolve_device(str(device))
    opened = open_checkpoint(source, data, key=key, device=dev, batch_size=batch_size, samples=max(mc_samples),
                             preprocess=preprocess, threads=threads, rows=rows, options=load_options(options, flags))
    _told(opened, None, on_note)
    x = _rows_for_ranks(opened)
    chosen = comparing.check_sizes(None if sizes is None else tuple(sizes), repeats, len(x), opened.data_name)
    with progress(sum(chosen) * repeats, "subset rows") as tick:
        return comparing.compare(opened.model, x, sizes=chosen, repeats=repeats, mc_samples=tuple(mc_samples),
                                 seed=seed, device=dev, batch_size=opened.batch_size, source=opened.data_name,
                                 on_work=tick)


def inspect(source: Source, data: object = None, *, key: str | None = None, options: LoadOptions | None = None,
            **flags: object) -> Introspection | None:
    """What `source` holds and how it would be read: model kind, H, D, both variances, every assumption with its
    evidence and the flag that overrides it; with `data`, the readings the weights leave open scored on its rows."""
    opts = load_options(options, flags)
    if data is not None:
        from entropy_elbo.opening import data_rows

        x, first, _, _ = data_rows(data, key)
        rows = x if x is not None else first
        opts = scored_on(opts, rows)  # a copy: a LoadOptions the caller passed is not changed
    if isinstance(source, nn.Module):
        raise EntropyElboError("source: inspect reads checkpoint files; for a live module use open_checkpoint("
                               "module, rows).introspection")
    loaded = load_model(_checkpoint_file(source), options=opts)
    intro = loaded.introspection
    if opts.rows is not None and intro is not None and intro.fmt != "entropy-elbo":  # a_h needs only the encoder
        said = check_encoder(loaded.model, opts.rows, intro, opts)
        if said is not None:
            intro.encoder.evidence += f"; {said}"
            intro.notes.append(f"warning: {said}: the encoder is not at a stationary point, or its variance "
                               "parameterization was misread (--encoder-var-param)")
        intro.notes.extend(f"warning: {line}" for line in reading_evidence(loaded.model, opts.rows))
    if opts.optimal_variance and intro is not None:  # chosen by estimate from the data, not the 1 it starts from
        intro.decoder.value = None
    return intro
