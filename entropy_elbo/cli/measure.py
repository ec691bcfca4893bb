"""estimate, inspect, collapse and compare: the commands that measure a checkpoint on data."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from entropy_elbo import compare as comparing
from entropy_elbo import distributed, report
from entropy_elbo.batching import resolve_batch_size
from entropy_elbo.checkpoints import LoadedModel, LoadOptions, inspect_checkpoint, load_model
from entropy_elbo.checkpoints.readings import spread_rows
from entropy_elbo.cli.base import (
    checkpoint_options,
    cpu_threads,
    data_options,
    device_option,
    join_ranks,
    json_option,
    main,
    plot_option,
    preprocess_option,
    seed_option,
    threads_option,
    watched,
)
from entropy_elbo.data import (
    iter_batches,
    load_image_folder,
    resolve_data,
)
from entropy_elbo.data.preprocess import as_trained
from entropy_elbo.devices import resolve_device
from entropy_elbo.elbo import at_optimal_variance, estimate, estimate_without_data, with_iwae
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.forecast import forecast_message
from entropy_elbo.latents import ACTIVE_THRESHOLD, LUCAS_DELTA, LUCAS_EPSILON, check_settings, collapse
from entropy_elbo.montecarlo import iwae_bound
from entropy_elbo.run_settings import parse_ints


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@data_options(required=False)
@click.option("--samples", type=int, default=100, show_default=True,
              help="Monte Carlo samples per data point (0: entropy ELBO only).")
@seed_option("the Monte Carlo samples")
@json_option
@click.option("--iwae", type=int, default=0, show_default=True,
              help="Also the importance-weighted bound on log p(x) with K samples per point (0: off).")
@device_option
@preprocess_option
@threads_option
@checkpoint_options
def estimate_cmd(checkpoint: Path, data: str | None, key: str | None, batch_size: int | None, samples: int,
                 seed: int, as_json: bool, iwae: int, device: str, load_options: LoadOptions) -> None:
    """Entropy ELBO, Monte Carlo ELBO and stationarity of CHECKPOINT over --data.

    A linear VAE's entropy ELBO (--samples 0) needs no --data: it comes from the parameters (Cor. 1, eq. 20).
    Under torchrun (several processes, here or on several machines) every process reads its own block of
    rows and the float64 sums are added across processes; process 0 alone prints.
    """
    if data is None:
        report.print_estimate(estimate_from_parameters(checkpoint, samples, iwae, load_options, device),
                              str(checkpoint), as_json)
        return
    ctx, dev = join_ranks(device)
    try:
        loaded, x, rows = distributed.all_or_none(ctx, dev, lambda: open_inputs(
            checkpoint, data, key, load_options, dev, batch_size=batch_size, samples=samples, needs_variance=True))
        wild = loaded.introspection is not None and loaded.introspection.fmt != "entropy-elbo"
        say_how = wild and not as_json and (ctx is None or ctx.is_main)
        if say_how and watched():  # a person watching a long pass learns how it was read before it starts
            report.print_reading(loaded.introspection)
            say_how = False
        if ctx is not None:
            est = distributed.estimate_sharded(loaded.model, x, ctx, batch_size=rows, samples=samples, seed=seed,
                                               device=dev, source=data)
            if iwae != 0:
                bound = distributed.iwae_sharded(loaded.model, x, ctx, batch_size=rows, samples=iwae, seed=seed,
                                                 device=dev, source=data)
                est = with_iwae(est, bound.value, bound.stderr, bound.samples)
        else:
            if (ahead := forecast_message(loaded.model, x, samples=samples, iwae=iwae, device=dev)) is not None:
                report.message(ahead)
            with report.work_progress(len(x) * (max(samples, 1) + iwae), "rows x samples") as tick:
                est = estimate(loaded.model, iter_batches(x, rows, source=data), samples=samples, seed=seed,
                               device=dev, on_work=tick)
                if iwae != 0:
                    bound = iwae_bound(loaded.model, iter_batches(x, rows, source=data), samples=iwae, seed=seed,
                                       device=dev, on_work=tick)
                    est = with_iwae(est, bound.value, bound.stderr, bound.samples)
    finally:
        distributed.teardown()
    if load_options.optimal_variance:
        est = at_optimal_variance(est)
        if loaded.introspection is not None:  # the sigma^2 used, not the 1 the reading started from
            loaded.introspection.decoder.value = est.stationarity["sigma2"]
    if wild:
        est.extra["checkpoint"] = loaded.introspection.to_dict()
        est.assumptions = est.extra["checkpoint"]["assumptions"]
    if say_how:  # off a terminal (a log, a script) after the pass, so that an error in it stays one line
        report.print_reading(loaded.introspection)
    if ctx is None or ctx.is_main:
        report.print_estimate(est, str(checkpoint), as_json)


estimate_cmd.name = "estimate"


def estimate_from_parameters(checkpoint: Path, samples: int, iwae: int, options: LoadOptions, device: str) -> object:
    """`estimate --samples 0` with no --data: a linear VAE's entropy ELBO from its parameters (Cor. 1, eq. 20)."""
    if samples != 0 or iwae != 0:
        raise EntropyElboError("estimate: pass --data (only --samples 0 of a linear VAE needs none)")
    model = load_model(checkpoint, device=resolve_device(device), options=options).model
    d = getattr(getattr(model, "config", None), "data_dim", None)
    est = None if d is None else estimate_without_data(model, int(d))
    if est is None:
        raise EntropyElboError(f"{checkpoint}: its encoder or decoder variance depends on the data, so its entropy "
                               "ELBO needs --data (only a linear VAE's comes from its parameters alone)")
    return est


def check_shape(model: object, x: np.ndarray, source: str) -> None:
    """The data's columns must match the model's input dimension."""
    config = getattr(model, "config", None)
    want = getattr(config, "data_dim", None)
    got = int(np.prod(x.shape[1:]))
    if want is not None and got != want:
        raise EntropyElboError(f"{source}: rows have {got} values but the model expects {want}; pass matching data")



def images_as_trained(data: str, loaded: LoadedModel, x: np.ndarray) -> np.ndarray:
    """An image folder read again at the size and centre crop its checkpoint was trained on (from its metadata)."""
    recorded = loaded.metadata.get("data") if Path(data).is_dir() else None
    images = recorded.get("images") if isinstance(recorded, dict) else None
    if not isinstance(images, dict) or (images.get("image_size"), images.get("crop")) == (x.shape[-1], None):
        return x
    return load_image_folder(data, int(images["image_size"]), images.get("crop"))


def table_as_trained(data: str, loaded: LoadedModel, x: np.ndarray) -> tuple[np.ndarray, str | None]:
    """An array file or named set read with the column drop and scaler its checkpoint was trained with (from its
    metadata, applied per --preprocess), and the note saying which was done."""
    recorded = loaded.metadata.get("data")
    rec = recorded.get("preprocessing") if isinstance(recorded, dict) else None
    if not isinstance(rec, dict) or Path(data).is_dir():
        return x, None
    return as_trained(x, rec, data, click.get_current_context().meta.get("preprocess", "auto"))


def open_inputs(checkpoint: Path, data: str, key: str | None, options: LoadOptions, dev: torch.device, *,
                batch_size: int | None, samples: int, needs_variance: bool) -> tuple[LoadedModel, np.ndarray, int]:
    """--data (a file, memory-mapped, or a named set), CHECKPOINT's model checked on its rows, the rows per batch."""
    x, _ = resolve_data(data, key=key)
    options.input_shape = tuple(x.shape[1:])
    options.rows = score_rows(x)
    loaded = load_model(checkpoint, device=dev, options=options)
    x = images_as_trained(data, loaded, x)
    x, note = table_as_trained(data, loaded, x)
    check_shape(loaded.model, x, data)
    context = distributed.context_from_env()
    if note is not None and (context is None or context.is_main):
        report.message(note)
    intro = loaded.introspection
    if intro is not None and intro.unresolved and not (needs_variance and intro.refusal):
        raise EntropyElboError(f"{intro.source}: {intro.unresolved}")
    if needs_variance:
        check_wild(loaded, x, data)
    rows = resolve_batch_size(batch_size, loaded.model, int(np.prod(x.shape[1:])), samples, dev)
    cpu_threads(loaded.model, min(rows, len(x)), samples, dev)  # a step never holds more rows than the data
    return loaded, x, rows


def score_rows(x: np.ndarray) -> torch.Tensor:
    """A few hundred rows spread evenly over the data (a copy, so a read-only memmap is fine), to score a
    checkpoint's readings: the first rows of a file sorted by class or time would mislead."""
    return torch.from_numpy(np.array(x[spread_rows(len(x))], dtype=np.float32))


def check_wild(loaded: LoadedModel, x: np.ndarray, source: str) -> None:
    """A checkpoint from the wild: the data's row size must be its D; a fixed variance needs --decoder-variance."""
    intro = loaded.introspection
    if intro is None or intro.fmt == "entropy-elbo":
        return
    got = int(np.prod(x.shape[1:]))
    if intro.d is not None and got != intro.d:
        raise EntropyElboError(f"{source}: rows have {got} values but the checkpoint's model takes {intro.d}; "
                               "pass matching data")
    if intro.refusal:
        raise EntropyElboError(f"{intro.source}: {intro.refusal}; `collapse` still applies (it needs only the "
                               "encoder)")
    if intro.decoder.kind == "fixed" and intro.decoder.value is None:
        value = "VALUE" if intro.decoder.implied is None else f"{intro.decoder.implied:g} (what its loss implies)"
        raise EntropyElboError(f"{intro.source}: its decoder variance was never learned ({intro.decoder.evidence}); "
                               f"pass --decoder-variance {value} for the Monte Carlo ELBO at that sigma^2, or "
                               "--decoder-variance optimal for the ELBO at the best sigma^2 given the rest")


@main.command(name="inspect")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", "data", default=None, help="Data file whose rows give the input shape (to run the model once).")
@click.option("--key", default=None, help="Array name inside a .npz file.")
@json_option
@checkpoint_options
def inspect_cmd(checkpoint: Path, data: str | None, key: str | None, as_json: bool, load_options: LoadOptions) -> None:
    """What CHECKPOINT holds: model kind, H, D, both variances, the evidence, and the flags that override them."""
    if data is not None:
        x, _ = resolve_data(data, key=key)
        load_options.input_shape = tuple(x.shape[1:])
        load_options.rows = score_rows(x)
    intro = inspect_checkpoint(checkpoint, load_options)
    if load_options.optimal_variance:  # chosen by estimate from the data, not the 1 the reading starts from
        intro.decoder.value = None
    report.print_inspection(intro, as_json)


@main.command(name="collapse")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@data_options
@click.option("--threshold", type=float, default=None,
              help="Entropy criterion (eq. 24): latent h is collapsed when its mean encoder entropy exceeds this "
                   "many nats. [default: 1.0, the paper's]")
@click.option("--delta", type=float, default=None,
              help="Instead of --threshold: collapsed when the mean encoder entropy exceeds H[p(z_h)] - DELTA "
                   "(1.0 nat is delta 0.419 for N(0,1)).")
@click.option("--active-threshold", type=float, default=ACTIVE_THRESHOLD, show_default=True,
              help="Active units (Burda et al. 2016): active when Var_x[E_q z_h] exceeds this.")
@click.option("--lucas-epsilon", type=float, default=LUCAS_EPSILON, show_default=True,
              help="Lucas et al. 2019 (eq. 71): KL in nats below which a data point counts as collapsed.")
@click.option("--lucas-delta", type=float, default=LUCAS_DELTA, show_default=True,
              help="Lucas et al. 2019: collapsed when a fraction >= 1 - DELTA of the data has KL < epsilon.")
@click.option("--top", type=click.IntRange(0), default=0, show_default=True,
              help="Show only the K latents of highest mean encoder entropy (0: all); the summary counts all.")
@json_option
@plot_option("a bar chart of the per-latent entropies")
@device_option
@preprocess_option
@threads_option
@checkpoint_options
def collapse_cmd(checkpoint: Path, data: str, key: str | None, batch_size: int | None, threshold: float | None,
                 delta: float | None, active_threshold: float, lucas_epsilon: float, lucas_delta: float, top: int,
                 as_json: bool, plot: Path | None, device: str, load_options: LoadOptions) -> None:
    """Which latents of CHECKPOINT have collapsed over --data: three metrics side by side.

    The paper's entropy criterion (eq. 24; needs only the encoder variances), active units (Burda et
    al. 2016) and the (epsilon, delta) KL measure (Lucas et al. 2019), in one streaming pass that runs
    only the encoder, so fixed-variance models work too. Exit status 0 whatever the verdicts.
    Under torchrun every process reads its own block of rows; the statistics are merged across processes.
    """
    check_settings(threshold, delta, active_threshold, lucas_epsilon, lucas_delta)
    ranks, dev = join_ranks(device)
    settings = {"threshold": threshold, "delta": delta, "active_threshold": active_threshold,
                "lucas_epsilon": lucas_epsilon, "lucas_delta": lucas_delta}
    try:
        loaded, x, rows = distributed.all_or_none(ranks, dev, lambda: open_inputs(
            checkpoint, data, key, load_options, dev, batch_size=batch_size, samples=0, needs_variance=False))
        if ranks is not None:
            result = distributed.collapse_sharded(loaded.model, x, ranks, batch_size=rows, device=dev, source=data,
                                                  **settings)
        else:
            with report.work_progress(len(x), "rows") as tick:
                result = collapse(loaded.model, report.counted(iter_batches(x, rows, source=data), tick), device=dev,
                                  **settings)
    finally:
        distributed.teardown()
    if ranks is not None and not ranks.is_main:
        return
    intro = loaded.introspection
    wild = intro is not None and intro.fmt != "entropy-elbo"
    if wild and intro.latent_shape:
        result.latent_shape = intro.latent_shape
    if wild and not as_json:
        report.print_reading(intro)
    found = intro.to_dict() if wild else None
    report.print_collapse(result, str(checkpoint), as_json,
                          {"checkpoint": found, "assumptions": found["assumptions"]} if found else None, top)
    if plot is not None:
        kind = getattr(getattr(loaded.model, "config", None), "kind", type(loaded.model).__name__)
        report.plot_collapse(result, str(plot), f"{checkpoint.name} ({kind}) on {data}")
        report.message(f"wrote the per-latent entropy chart to {plot}")


@main.command(name="compare")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@data_options
@click.option("--sizes", default=None,
              help="Subset sizes n (data points), comma-separated, each at most the number of rows "
                   "[default: 10,100,1000,10000 up to the number of rows].")
@click.option("--repeats", type=int, default=10, show_default=True, help="Random subsets drawn per size.")
@click.option("--mc-samples", default="1,100", show_default=True, help="Monte Carlo sample counts to compare.")
@plot_option("the paper's Fig. 2(b)/6 (estimates and std vs n)")
@seed_option("the subsets and the samples")
@json_option
@device_option
@preprocess_option
@threads_option
@checkpoint_options
def compare_cmd(checkpoint: Path, data: str, key: str | None, batch_size: int | None, sizes: str | None, repeats: int,
                mc_samples: str, plot: Path | None, seed: int, as_json: bool, device: str,
                load_options: LoadOptions) -> None:
    """Spread and cost of the entropy ELBO and the Monte Carlo ELBO on random subsets of --data (Fig. 2(b), 6)."""
    dev = resolve_device(device)
    most = max(parse_ints(mc_samples, "--mc-samples"))
    loaded, x, batch_size = open_inputs(checkpoint, data, key, load_options, dev, batch_size=batch_size,
                                        samples=most, needs_variance=True)
    chosen = comparing.check_sizes(None if sizes is None else comparing.parse_sizes(sizes), repeats, len(x), data)
    with report.work_progress(sum(chosen) * repeats, "subset rows") as tick:
        cmp = comparing.compare(loaded.model, x, sizes=chosen, repeats=repeats,
                                mc_samples=comparing.parse_sizes(mc_samples, "--mc-samples"), seed=seed, device=dev,
                                batch_size=batch_size, source=data, on_work=tick)
    if plot is not None:
        report.message(f"wrote {comparing.plot_comparison(cmp, plot)}")
    report.print_comparison(cmp, as_json)


