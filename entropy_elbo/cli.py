"""The command line: a thin layer over the library. The only module that imports click."""

from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path

import click
import numpy as np
import torch

from entropy_elbo import compare as comparing
from entropy_elbo import distributed, report
from entropy_elbo.batching import resolve_batch_size
from entropy_elbo.checkpoints import LoadedModel, LoadOptions, inspect_checkpoint, load_model, save_checkpoint
from entropy_elbo.checkpoints.adapters import OUTPUT_ACTIVATIONS
from entropy_elbo.checkpoints.native import check_writable
from entropy_elbo.checkpoints.readings import spread_rows
from entropy_elbo.collapse import ACTIVE_THRESHOLD, LUCAS_DELTA, LUCAS_EPSILON, check_settings, collapse
from entropy_elbo.data import (
    SYNTHETIC,
    iter_batches,
    load_image_folder,
    make_synthetic,
    resolve_data,
    save_chunks,
    synthetic_chunks,
)
from entropy_elbo.data.preprocess import CHOICES as PREPROCESS_CHOICES
from entropy_elbo.data.preprocess import as_trained
from entropy_elbo.devices import resolve_device
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.estimate import at_optimal_variance, estimate, estimate_without_data, with_iwae
from entropy_elbo.forecast import forecast_message
from entropy_elbo.launch import parse_ints, train_run
from entropy_elbo.models import MODELS, ModelConfig, build_model
from entropy_elbo.models.config import ACTIVATIONS
from entropy_elbo.montecarlo import iwae_bound
from entropy_elbo.presets import PRESETS
from entropy_elbo.threads import model_work, use_threads
from entropy_elbo.train import MODEL_DEFAULTS, TrainConfig, train

SEED = click.IntRange(0, 2**63 - 1)  # numpy and torch both take these seeds


class Group(click.Group):
    """Turns our errors into one line on stderr and exit 1; --debug shows the traceback instead."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except EntropyElboError as err:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {one_line(str(err))}", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except Exception as err:  # a bug of ours: still one line, with the way to report it
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: internal error {type(err).__name__}: {one_line(str(err))}; rerun with --debug and "
                       "report it", err=True)
            sys.exit(1)


def one_line(text: str) -> str:
    """A message whose quoted parts span lines (a library's paragraph) as the one line the CLI promises."""
    return " / ".join(line.strip() for line in text.strip().splitlines() if line.strip())


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="entropy-elbo", message="entropy-elbo %(version)s")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error (for bug reports).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """entropy-elbo: the ELBO of a Gaussian VAE from three entropies (Damm et al., AISTATS 2023).

    Every figure is in nats per data point.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def data_options(f=None, *, required: bool = True):  # noqa: ANN001, ANN201
    """--data, --key and --batch-size, shared by every command that reads data."""
    if f is None:
        return functools.partial(data_options, required=required)
    options = [
        click.option("--data", "data", required=required,
                     help="Data: a .npy (memory-mapped), .npz or .csv file, a named set or an image folder"
                          + ("." if required else " (none: --samples 0 of a linear VAE, from its parameters).")),
        click.option("--key", default=None, help="Array name inside a .npz file."),
        click.option("--batch-size", type=int, default=None,
                     help="Rows per evaluation chunk (default: chosen from free memory)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def device_option(f):  # noqa: ANN001, ANN201
    return click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")(f)


def seed_option(what: str):  # noqa: ANN201
    """--seed, one range for every command (numpy and torch both take it)."""
    return click.option("--seed", type=SEED, default=0, show_default=True, help=f"Seed of {what}.")


def activation_option(default: str | None, what: str):  # noqa: ANN201
    """--activation, one choice list for every command."""
    return click.option("--activation", type=click.Choice(list(ACTIVATIONS)), default=default,
                        show_default=default is not None, help=what)


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
threads_option = click.option(
    "--threads", type=click.IntRange(1), default=None, expose_value=False, is_eager=True,
    callback=lambda ctx, param, value: ctx.meta.__setitem__("threads", value),
    help="CPU threads for torch [default: OMP_NUM_THREADS, else 1 for small models and the idle cores for large].")


def cpu_threads(model: torch.nn.Module, rows: int, samples: int, dev: torch.device) -> None:
    """Set torch's CPU threads for this command's work (--threads, OMP_NUM_THREADS or the work's size)."""
    if dev.type == "cpu":
        use_threads(model_work(model, rows, samples), click.get_current_context().meta.get("threads"))
preprocess_option = click.option(
    "--preprocess", type=click.Choice(list(PREPROCESS_CHOICES)), default="auto", show_default=True,
    expose_value=False, callback=lambda ctx, param, value: ctx.meta.__setitem__("preprocess", value),
    help="A table trained with --drop-column or --scale: apply that preprocessing (recorded in the checkpoint) "
         "to --data ('as-trained'), read it as is ('none'), or tell by its shape ('auto').")
quiet_option = click.option("--quiet", is_flag=True, help="No progress bar.")


def plot_option(what: str):  # noqa: ANN201
    """--plot FILE: an extra figure beside the command's output; the extension (.png, .pdf, .svg) picks the format."""
    return click.option("--plot", type=click.Path(path_type=Path), default=None, callback=_plot_folder,
                        help=f"Also draw {what} to this image file (.png, .pdf or .svg; needs matplotlib).")


def _plot_folder(ctx: click.Context, param: click.Parameter, plot: Path | None) -> Path | None:
    """A --plot file's folder must exist before any work is done."""
    if plot is not None and not plot.parent.is_dir():
        raise EntropyElboError(f"--plot {plot}: folder {plot.parent} does not exist; create it first")
    return plot


CHECKPOINT_FLAGS = ("model", "model_kwargs", "decoder_var", "decoder_var_param", "encoder_var", "encoder_var_param",
                    "decoder_variance", "activation", "output_activation", "head_activation", "trust_code")
PARAM_CHOICE = click.Choice(["logvar", "logstd", "std", "var", "softplus_std", "softplus_var"])


def checkpoint_options(f):  # noqa: ANN001, ANN201
    """Flags that say how to read a checkpoint from the wild; the command receives them as `load_options`."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        flags = {k: kwargs.pop(k) for k in CHECKPOINT_FLAGS}
        return f(*args, load_options=LoadOptions(**flags), **kwargs)

    options = [
        click.option("--model", "model", default=None, metavar="FILE.py:NAME|module:NAME",
                     help="Your model class or factory; the state_dict is loaded into it strictly."),
        click.option("--model-kwargs", default=None, metavar="JSON", help="Keyword arguments for --model, as JSON."),
        click.option("--decoder-var", default=None, metavar="NAME",
                     help="Parameter or sub-network holding the decoder variance (overrides the guess)."),
        click.option("--decoder-var-param", type=PARAM_CHOICE, default=None,
                     help="How --decoder-var stores it (log-variance, log-std, std, variance, softplus of either)."),
        click.option("--encoder-var", default=None, metavar="NAME",
                     help="Encoder variance head or parameter (overrides the guess)."),
        click.option("--encoder-var-param", type=PARAM_CHOICE, default=None, help="How --encoder-var stores it."),
        click.option("--decoder-variance", default=None, metavar="VALUE|optimal",
                     help="sigma^2 of a model whose decoder variance was never learned (MSE-trained), or 'optimal': "
                          "sigma*^2 = sigma^2 r, the value that maximises the Monte Carlo ELBO given the rest."),
        activation_option(None, "Activation between the Linear layers of a plain MLP state_dict [default: scored "
                                "on the data]."),
        click.option("--output-activation", type=click.Choice(list(OUTPUT_ACTIVATIONS)), default=None,
                     help="After a plain MLP's decoder output [default: scored on the data]; 'sigmoid' also states "
                          "that a sigmoid output is a Gaussian mean, not Bernoulli probabilities."),
        click.option("--head-activation/--no-head-activation", default=None,
                     help="Whether the activation also follows the encoder heads (as in the paper authors' main.py) "
                          "[default: scored on the data]."),
        click.option("--trust-code", "--trust-pickle", "trust_code", is_flag=True,
                     help="Allow TorchScript archives and pickles (whole modules, pythae's encoder.pkl): loading "
                          "them runs code from the file. Only for files you trust. (--trust-pickle: old name.)"),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


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


def watched() -> bool:
    """Whether a person is watching stderr (a terminal), not a log or a script."""
    return sys.stderr.isatty()


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


@main.command()
@click.argument("name", type=click.Choice(sorted(SYNTHETIC)))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output .npy or .csv file.")
@click.option("-n", "--n", "n", type=int, default=None, help="Number of points (default: the paper's).")
@seed_option("the data")
def data(name: str, out: Path, n: int | None, seed: int) -> None:
    """Write one of the paper's synthetic data sets (seeded) to --out."""
    shape, chunks = synthetic_chunks(name, n=n, seed=seed)
    save_chunks(chunks, shape, np.float32, out, what=f"data {name} -n {shape[0]}")
    report.message(f"wrote {name} data, shape {shape}, seed {seed}, to {out}")


@main.command(name="train")
@click.argument("model", type=click.Choice(sorted(MODELS)), required=False)
@click.option("--data", "data_spec", default=None,
              help="A synthetic set's name (ppca, ring, manifold, stream), a .npy/.npz/.csv file or an image folder.")
@click.option("--key", default=None, help="Array name inside a .npz file.")
@click.option("--drop-column", type=int, default=None, help="Drop this column of a table (e.g. SUSY's label: 0).")
@click.option("--scale", type=click.Choice(["minmax", "standard", "none"]), default="none", show_default=True,
              help="Per-feature scaling, fitted on the training split only.")
@click.option("--holdout", type=float, default=0.0, show_default=True,
              help="Fraction of rows held out (seeded split); their ELBO is logged each epoch.")
@click.option("--image-size", type=int, default=64, show_default=True,
              help="Image folders: resize the shorter side and centre-crop to this many pixels.")
@click.option("--crop", type=int, default=None,
              help="Image folders: centre-crop this many pixels first, then resize (the celeba preset: 148).")
@click.option("--rows", type=int, default=None,
              help="Use only the first ROWS rows of the data, before the split (the susy preset: 2,500,000).")
@click.option("--preset", default=None, help=f"The paper's settings: {', '.join(PRESETS)}; flags override them.")
@click.option("--latents", type=int, default=2, show_default=True, help="Number of latents H.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder (checkpoint model.safetensors inside), or a .safetensors checkpoint whose run "
                   "folder <name>.run/ is made beside it.")
@click.option("--resume", type=click.Path(path_type=Path), default=None,
              help="Carry on the run in this folder (or of this checkpoint) after an interruption.")
@click.option("--epochs", type=int, default=None, help="Epochs (default per model or preset).")
@click.option("--batch-size", type=int, default=None, help="Batch size (default per model or preset).")
@click.option("--lr", type=float, default=None, help="Adam learning rate (default per model or preset).")
@click.option("--samples", type=int, default=None, help="Samples of z per point in the training ELBO.")
@click.option("--decay-fraction", type=float, default=None,
              help="Last fraction of the epochs with a cosine lr decay to lr/100 (default 0.3; 0: the "
                   "paper's constant lr).")
@click.option("--variance-lr-factor", type=float, default=None,
              help="lr factor of ln sigma^2, ln A and the linear ln tau^2, from the first step (default 10; "
                   "1: the paper's).")
@click.option("--hidden", default=None, help="Hidden layer sizes of the MLPs (conv: channels per layer).")
@activation_option(None, "Activation of the hidden layers (default per model).")
@click.option("--init-log-sigma2", type=float, default=0.0, show_default=True, help="Initial ln sigma^2.")
@seed_option("the weights, split, batches, samples")
@quiet_option
@device_option
@threads_option
@click.pass_context
def train_cmd(ctx: click.Context, model: str | None, data_spec: str | None, out: Path | None, resume: Path | None,
              quiet: bool, device: str, **flags: object) -> None:
    """Train MODEL (or the --preset's) on --data with the sampled ELBO, ending with a decaying learning rate.

    `--resume RUN` needs no MODEL: the run folder holds it.

    Every epoch appends a row to <run>/log.jsonl and writes the checkpoint and the resume state atomically.
    Under torchrun every process trains on its own block of rows with --batch-size rows per step
    (DistributedDataParallel averages the gradients); process 0 alone writes and reports.
    """
    given = {k: v for k, v in flags.items() if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
    result = train_run(model, out=out, resume=resume, device=device, progress=not quiet,
                       threads=ctx.meta.get("threads"), data=data_spec, **given)
    if not result.main_process:
        return
    last = result.history[-1]
    gap = last["relative_gap"]
    report.message(f"wrote {result.run.checkpoint} (epoch {last['epoch']}) and {result.run.folder}/log.jsonl: sampled "
                   f"ELBO {last['elbo']:.4f}, entropy ELBO {report._fmt(last['entropy_elbo'])} nats per data point, "
                   f"gap {'n/a' if gap is None else f'{100 * gap:+.2f}%'}, {last['active_latents']} active latents "
                   "(averages over the last epoch's batches; `entropy-elbo estimate` gives the checkpoint's own)")


def fit(config: ModelConfig, x: np.ndarray, settings: TrainConfig, dev: torch.device, out: Path, source: str,
        quiet: bool) -> list[dict[str, object]]:
    """Build, train and save a model; returns the training log."""
    check_writable(out)
    torch.manual_seed(settings.seed)
    model = build_model(config)
    cpu_threads(model, settings.batch_size, settings.samples, dev)
    history = train(model, np.asarray(x), settings, device=dev, progress=not quiet)
    save_checkpoint(model, out, training=settings.to_dict(), data={"source": source, "shape": list(x.shape)})
    return history


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Keep the files in this folder.")
@click.option("--out-dir", "out_dir", type=click.Path(path_type=Path), default=None, hidden=True)  # its old name
@device_option
@threads_option
def demo(out: Path | None, out_dir: Path | None, device: str) -> None:
    """Train a small VAE-1 on bundled synthetic data, then estimate its ELBO both ways (under a minute)."""
    dev = resolve_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = out or out_dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        x = make_synthetic("ppca", n=5000, seed=0)
        ckpt = folder / "demo.safetensors"
        report.message("demo: training VAE-1 (H=2, 2x50 ReLU) on 5,000 points of the pPCA data (D=10) ...")
        settings = TrainConfig(**MODEL_DEFAULTS["demo"])
        fit(ModelConfig(kind="vae1", data_dim=10, latent_dim=2), x, settings, dev, ckpt, "ppca", False)
        loaded = load_model(ckpt, device=dev)
        est = estimate(loaded.model, iter_batches(x, 4096, source="ppca"), samples=100, seed=0, device=dev)
        report.print_estimate(est, "the demo VAE-1", False)
        report.message("The two ELBOs agree near a stationary point; r and a_h near 1 say how near it is.")


def join_ranks(device: str) -> tuple[distributed.Context | None, torch.device]:
    """Under torchrun with several processes: this rank, joined to the group, and its device; else (None, device)."""
    dev = resolve_device(device)
    ctx = distributed.context_from_env()
    if ctx is None or ctx.world_size == 1:
        return None, dev
    return ctx, distributed.setup(ctx, dev)


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


@main.command()
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Image file to write: .png, .pdf or .svg (the extension picks the format).")
@click.option("--threshold", type=float, default=1.0, show_default=True, help="Collapse threshold in nats (eq. 24).")
def plot(run_path: Path, out: Path, threshold: float) -> None:
    """Fig. 1 (ELBO vs the three entropies; relative gap) and Fig. 7 (per-latent entropies) of a training RUN."""
    from entropy_elbo.plot import plot_run, run_log, run_title

    rows = run_log(run_path)
    plot_run(rows, out, threshold, title=run_title(run_path))
    report.message(f"wrote {out}: {len(rows)} epochs of {run_path}")


@main.command(name="select")
@click.option("--data", "data", required=True, help="The stream: a .npy (memory-mapped, read in order), .npz or .csv.")
@click.option("--key", default=None, help="Array name inside a .npz file.")
@click.option("--latents", default="2,4,6", show_default=True, help="Candidate latent counts H, comma-separated.")
@click.option("--batch-size", type=int, default=10, show_default=True,
              help="Rows per batch: one Adam step each, and the n of each batch's BIC.")
@click.option("--lr", type=float, default=0.002, show_default=True, help="Adam learning rate.")
@click.option("--samples", type=int, default=100, show_default=True, help="Samples of z per row in the sampled ELBO.")
@click.option("--phases", default=None,
              help="Rows per phase, comma-separated (e.g. 100000,100000,100000), or 'stream' for the paper's "
                   "synthetic stream (three equal phases of true dimension 6, 2, 4). Default: windows.")
@click.option("--true-dims", default=None, help="True intrinsic dimension of each phase, comma-separated.")
@click.option("--window", type=int, default=1000, show_default=True,
              help="Batches per summarized window when --phases is not given.")
@click.option("--tail", type=int, default=1000, show_default=True,
              help="Summarize the last TAIL batches of each phase or window (at most half of them).")
@seed_option("the initial weights and the samples")
@json_option
@plot_option("Fig. 3(a), BIC over the stream,")
@quiet_option
@device_option
@threads_option
def select_cmd(data: str, key: str | None, latents: str, batch_size: int, lr: float, samples: int,
               phases: str | None, true_dims: str | None, window: int, tail: int, seed: int, as_json: bool,
               plot: Path | None, quiet: bool, device: str) -> None:
    """Pick the number of latents of a linear VAE on a data stream by BIC, from the entropies and by sampling.

    One linear VAE per candidate H takes one Adam step per batch; after each batch
    BIC = -2 n F + (H D + 1) log n is recorded with F from Corollary 1 (eq. 20, no data needed) and with F the
    batch's sampled ELBO (Appendix A); n is the batch's row count.
    """
    from entropy_elbo import select as sel_mod
    from entropy_elbo.data import stream_phases

    dev = resolve_device(device)
    candidates = parse_ints(latents, "--latents")
    if plot is not None:
        report.import_pyplot()
    x, _ = resolve_data(data, key=key)
    check_latents(candidates, x, data)
    total = len(x)
    if phases == "stream":
        if total % 3:
            raise EntropyElboError(f"--phases stream: {data} has {total} rows, not three equal phases; "
                                   "give the phase lengths instead")
        segments = sel_mod.phase_segments(*zip(*[(p.stop - p.start, p.dim) for p in stream_phases(total // 3)],
                                               strict=True))
    elif phases is not None:
        dims = parse_ints(true_dims, "--true-dims") if true_dims else None
        lengths = parse_ints(phases, "--phases")
        if dims is not None and len(dims) != len(lengths):
            raise EntropyElboError(f"--true-dims: {len(dims)} values for {len(lengths)} phases; give one per phase")
        if sum(lengths) != total:
            raise EntropyElboError(f"--phases: they add up to {sum(lengths)} rows but {data} has {total}; "
                                   "make them add up to the number of rows")
        segments = sel_mod.phase_segments(lengths, dims)
    else:
        segments = None
    chunks = (c.reshape(len(c), -1) for c in iter_batches(x, 65_536, source=data))
    if dev.type == "cpu":  # one linear VAE per candidate: about H D weights each
        use_threads(float(sum(candidates)) * int(np.prod(x.shape[1:])) * batch_size * samples,
                    click.get_current_context().meta.get("threads"))
    with report.rows_progress(total, quiet or as_json) as progress:
        result = sel_mod.select_stream(chunks, candidates, batch_size=batch_size, lr=lr, samples=samples, seed=seed,
                                       device=dev, on_rows=progress)
    if segments is None:
        segments = sel_mod.window_segments(result, window)
    summaries = sel_mod.summarize(result, segments, tail)
    n_text = f"n = {batch_size} rows per batch (the batch each BIC is recorded for)"
    report.print_selection(summaries, result, data, n_text, as_json)
    if plot is not None:
        report.plot_bic(result, segments, str(plot))
        report.message(f"wrote {plot}")


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


def check_latents(candidates: tuple[int, ...], x: np.ndarray, source: str) -> None:
    """select: every candidate H must satisfy 1 <= H <= D."""
    d = int(np.prod(x.shape[1:]))
    if max(candidates) > d:
        raise EntropyElboError(f"--latents {max(candidates)}: {source} has D={d} values per row; "
                               f"pass candidates 1 <= H <= {d}")
