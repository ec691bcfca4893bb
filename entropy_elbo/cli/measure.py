"""estimate, inspect, collapse and compare: each parses its flags, calls the library's front door
(`entropy_elbo.measure`) and formats what it returns. The library is imported inside each command, so that
`--help` and a usage error never import torch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from entropy_elbo.choices import ACTIVE_THRESHOLD, LUCAS_DELTA, LUCAS_EPSILON
from entropy_elbo.cli.base import (
    checkpoint_options,
    data_options,
    device_option,
    json_option,
    main,
    plot_option,
    preprocess_option,
    rows_option,
    seed_option,
    threads_option,
)

if TYPE_CHECKING:
    from entropy_elbo.checkpoints import LoadOptions
    from entropy_elbo.opening import Opened


def watched() -> bool:
    """Whether a person is watching stderr (a terminal), not a log or a script."""
    return sys.stderr.isatty()


def common(ctx_meta: dict, **kw: object) -> dict[str, object]:
    """The options every measuring command hands the library: --threads, --preprocess, --rows, progress, notes."""
    from entropy_elbo import report

    return {"threads": ctx_meta.get("threads"), "preprocess": ctx_meta.get("preprocess", "auto"),
            "rows": ctx_meta.get("rows"), "on_note": report.message, "progress": report.work_progress, **kw}


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
@rows_option
@threads_option
@checkpoint_options
def estimate_cmd(checkpoint: Path, data: str | None, key: str | None, batch_size: int | None, samples: int,
                 seed: int, as_json: bool, iwae: int, device: str, load_options: LoadOptions) -> None:
    """Entropy ELBO, Monte Carlo ELBO and stationarity of CHECKPOINT over --data.

    A linear VAE's entropy ELBO (--samples 0) needs no --data: it comes from the parameters (Cor. 1, eq. 20).
    Under torchrun (several processes, here or on several machines) every process reads its own block of
    rows and the float64 sums are added across processes; process 0 alone prints.
    """
    from entropy_elbo import measure, report

    opened: list[Opened] = []

    def before_pass(read: Opened) -> None:  # a person watching a long pass learns how it was read before it starts
        opened.append(read)
        if read.wild and not as_json and measure.is_main_process() and watched():
            report.print_reading(read.introspection)

    est = measure.estimate(checkpoint, data, samples=samples, seed=seed, iwae=iwae, device=device,
                           batch_size=batch_size, key=key, options=load_options, on_open=before_pass,
                           **common(click.get_current_context().meta))
    if not measure.is_main_process():
        return
    if opened and opened[0].wild and not as_json and not watched():  # a log or a script: after the pass, so that
        report.print_reading(opened[0].introspection)  # an error found in the pass stays one line
    report.print_estimate(est, str(checkpoint), as_json)


estimate_cmd.name = "estimate"


@main.command(name="inspect")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", "data", default=None, help="Data file whose rows give the input shape (to run the model once).")
@click.option("--key", default=None, help="Array name inside a .npz file.")
@json_option
@checkpoint_options
def inspect_cmd(checkpoint: Path, data: str | None, key: str | None, as_json: bool, load_options: LoadOptions) -> None:
    """What CHECKPOINT holds: model kind, H, D, both variances, the evidence, and the flags that override them."""
    from entropy_elbo import measure, report

    intro = measure.inspect(checkpoint, data, key=key, options=load_options)
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
@rows_option
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
    from entropy_elbo import measure, report

    if plot is not None:
        report.import_pyplot()  # no matplotlib: say so before the pass, not after it
    opened: list[Opened] = []
    result = measure.collapse(checkpoint, data, threshold=threshold, delta=delta, active_threshold=active_threshold,
                              lucas_epsilon=lucas_epsilon, lucas_delta=lucas_delta, device=device,
                              batch_size=batch_size, key=key, options=load_options, on_open=opened.append,
                              **common(click.get_current_context().meta))
    if not measure.is_main_process():
        return
    read = opened[0]
    found = read.introspection.to_dict() if read.wild else None
    if found and not as_json:
        report.print_reading(read.introspection)
    report.print_collapse(result, str(checkpoint), as_json,
                          {"checkpoint": found, "assumptions": found["assumptions"]} if found else None, top)
    if plot is not None:
        from entropy_elbo.plot import model_name

        report.plot_collapse(result, str(plot), f"{checkpoint.name} ({model_name(read.model)}) on {Path(data).name}")
        report.message(f"wrote the per-latent entropy chart to {plot}")


@main.command(name="compare")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@data_options
@click.option("--sizes", default=None,
              help="Subset sizes n (data points), comma-separated, each at most the number of rows "
                   "[default: 10,100,1000,10000 below the number of rows; else half the rows].")
@click.option("--repeats", type=int, default=10, show_default=True, help="Random subsets drawn per size.")
@click.option("--mc-samples", default="1,100", show_default=True, help="Monte Carlo sample counts to compare.")
@plot_option("the paper's Fig. 2(b)/6 (estimates and std vs n)")
@seed_option("the subsets and the samples")
@json_option
@device_option
@preprocess_option
@rows_option
@threads_option
@checkpoint_options
def compare_cmd(checkpoint: Path, data: str, key: str | None, batch_size: int | None, sizes: str | None, repeats: int,
                mc_samples: str, plot: Path | None, seed: int, as_json: bool, device: str,
                load_options: LoadOptions) -> None:
    """Spread and cost of the entropy ELBO and the Monte Carlo ELBO on random subsets of --data (Fig. 2(b), 6)."""
    from entropy_elbo import compare as comparing
    from entropy_elbo import measure, report

    if plot is not None:
        report.import_pyplot()  # no matplotlib: say so before the pass, not after it
    cmp = measure.compare(checkpoint, data, sizes=None if sizes is None else comparing.parse_sizes(sizes),
                          repeats=repeats, mc_samples=comparing.parse_sizes(mc_samples, "--mc-samples"), seed=seed,
                          device=device, batch_size=batch_size, key=key, options=load_options,
                          **common(click.get_current_context().meta))
    if plot is not None:
        report.message(f"wrote {comparing.plot_comparison(cmp, plot)}")
    report.print_comparison(cmp, as_json)
