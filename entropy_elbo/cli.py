"""The command line: a thin layer over the library. The only module that imports click."""

from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path

import click
import numpy as np
import torch

from entropy_elbo import report
from entropy_elbo.checkpoints import LoadedModel, LoadOptions, inspect_checkpoint, load_model, save_checkpoint
from entropy_elbo.checkpoints.native import check_writable
from entropy_elbo.collapse import ACTIVE_THRESHOLD, LUCAS_DELTA, LUCAS_EPSILON, check_settings, collapse
from entropy_elbo.data import SYNTHETIC, iter_batches, make_synthetic, open_array, resolve_data, save_array
from entropy_elbo.devices import resolve_device
from entropy_elbo.entropies import LOG_VAR_LIMIT
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.estimate import estimate
from entropy_elbo.models import MODELS, ModelConfig, build_model
from entropy_elbo.models.config import ACTIVATIONS
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
            click.echo(f"Error: {err}", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except Exception as err:  # a bug of ours: still one line, with the way to report it
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: internal error {type(err).__name__}: {err}; rerun with --debug and report it", err=True)
            sys.exit(1)


@click.group(cls=Group)
@click.option("--debug", is_flag=True, help="Show the full traceback of an error (for bug reports).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """entropy-elbo: the ELBO of a Gaussian VAE from three entropies (Damm et al., AISTATS 2023).

    Every figure is in nats per data point.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def data_options(f):  # noqa: ANN001, ANN201
    """--data, --key and --batch-size, shared by every command that reads data."""
    options = [
        click.option("--data", "data", required=True, help="Data: a .npy (memory-mapped), .npz or .csv file."),
        click.option("--key", default=None, help="Array name inside a .npz file."),
        click.option("--batch-size", type=int, default=4096, show_default=True, help="Rows per evaluation chunk."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def device_option(f):  # noqa: ANN001, ANN201
    return click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")(f)


CHECKPOINT_FLAGS = ("model", "model_kwargs", "decoder_var", "decoder_var_param", "encoder_var", "encoder_var_param",
                    "decoder_variance", "activation", "trust_pickle")
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
        click.option("--decoder-variance", type=float, default=None, metavar="VALUE",
                     help="sigma^2 of a model whose decoder variance was never learned (MSE-trained)."),
        click.option("--activation", type=click.Choice(list(ACTIVATIONS)), default="relu", show_default=True,
                     help="Activation between the Linear layers of a plain MLP state_dict."),
        click.option("--trust-pickle", is_flag=True,
                     help="Allow unpickling arbitrary objects: runs code from the file. Only for files you trust."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@data_options
@click.option("--samples", type=int, default=100, show_default=True,
              help="Monte Carlo samples per data point (0: entropy ELBO only).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the Monte Carlo samples.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@device_option
@checkpoint_options
def estimate_cmd(checkpoint: Path, data: str, key: str | None, batch_size: int, samples: int, seed: int,
                 as_json: bool, device: str, load_options: LoadOptions) -> None:
    """Entropy ELBO, Monte Carlo ELBO and stationarity of CHECKPOINT over --data."""
    dev = resolve_device(device)
    x = open_array(data, key=key)
    load_options.input_shape = tuple(x.shape[1:])
    loaded = load_model(checkpoint, device=dev, options=load_options)
    if batch_size < 1:
        raise EntropyElboError(f"--batch-size: got {batch_size}; it must be >= 1")
    check_shape(loaded.model, x, data)
    check_wild(loaded, x, data, samples)
    gen = torch.Generator(device=dev).manual_seed(seed)
    est = estimate(loaded.model, iter_batches(x, batch_size, source=data), samples=samples, generator=gen,
                   device=dev)
    if loaded.introspection is not None and loaded.introspection.fmt != "entropy-elbo":
        est.extra["checkpoint"] = loaded.introspection.to_dict()
        if not as_json:
            report.message(report.wild_summary(loaded.introspection))
    report.print_estimate(est, str(checkpoint), as_json)


estimate_cmd.name = "estimate"


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
@click.option("--seed", type=SEED, default=0, show_default=True)
def data(name: str, out: Path, n: int | None, seed: int) -> None:
    """Write one of the paper's synthetic data sets (seeded) to --out."""
    x = make_synthetic(name, n=n, seed=seed)
    save_array(x, out)
    report.message(f"wrote {name} data, shape {tuple(x.shape)}, seed {seed}, to {out}")


@main.command(name="train")
@click.argument("model", type=click.Choice(sorted(MODELS)))
@click.option("--data", "data_spec", required=True, help="A synthetic set's name (ppca, ring, ...) or a data file.")
@click.option("--key", default=None, help="Array name inside a .npz file.")
@click.option("--latents", type=int, default=2, show_default=True, help="Number of latents H.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Checkpoint to write (.safetensors).")
@click.option("--epochs", type=int, default=None, help="Epochs (default per model).")
@click.option("--batch-size", type=int, default=None, help="Batch size (default per model).")
@click.option("--lr", type=float, default=None, help="Adam learning rate (default per model).")
@click.option("--samples", type=int, default=None, help="Samples of z per point in the training ELBO.")
@click.option("--hidden", default="50,50", show_default=True, help="Hidden layer sizes of the MLPs.")
@click.option("--activation", default="relu", show_default=True)
@click.option("--init-log-sigma2", type=float, default=0.0, show_default=True, help="Initial ln sigma^2.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@device_option
def train_cmd(model: str, data_spec: str, key: str | None, latents: int, out: Path, epochs: int | None,
              batch_size: int | None, lr: float | None, samples: int | None, hidden: str, activation: str,
              init_log_sigma2: float, seed: int, quiet: bool, device: str) -> None:
    """Train MODEL on --data with the sampled ELBO, ending with a decaying learning rate."""
    dev = resolve_device(device)
    x, source = resolve_data(data_spec, key=key, seed=seed)
    x = training_data(x, data_spec, latents, init_log_sigma2)
    config = ModelConfig(kind=model, data_dim=int(np.prod(x.shape[1:])), latent_dim=latents,
                         hidden=parse_ints(hidden, "--hidden"), activation=activation,
                         init_log_sigma2=init_log_sigma2)
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "samples": samples}
    settings = TrainConfig(**{**MODEL_DEFAULTS[model], **{k: v for k, v in given.items() if v is not None}},
                           seed=seed)
    history = fit(config, x, settings, dev, out, source, quiet)
    last = history[-1]
    report.message(f"wrote {out}: sampled ELBO {last['elbo']:.4f}, entropy ELBO {last['entropy_elbo']:.4f} "
                   "nats per data point (last epoch)")


def fit(config: ModelConfig, x: np.ndarray, settings: TrainConfig, dev: torch.device, out: Path, source: str,
        quiet: bool) -> list[dict[str, object]]:
    """Build, train and save a model; returns the training log."""
    check_out(out)
    torch.manual_seed(settings.seed)
    model = build_model(config)
    with report.epoch_progress(settings.epochs, quiet) as progress:
        history = train(model, np.asarray(x), settings, device=dev, on_epoch=progress)
    save_checkpoint(model, out, training=settings.to_dict(), data={"source": source, "shape": list(x.shape)})
    return history


def parse_ints(text: str, flag: str) -> tuple[int, ...]:
    """'50,50' -> (50, 50)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise EntropyElboError(f"{flag}: {text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise EntropyElboError(f"{flag}: {text!r} needs at least one positive size")
    return values


@main.command()
@click.option("--out-dir", type=click.Path(path_type=Path), default=None, help="Keep the files here.")
@device_option
def demo(out_dir: Path | None, device: str) -> None:
    """Train a small VAE-1 on bundled synthetic data, then estimate its ELBO both ways (under a minute)."""
    dev = resolve_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = out_dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        x = make_synthetic("ppca", n=5000, seed=0)
        ckpt = folder / "demo.safetensors"
        report.message("demo: training VAE-1 (H=2, 2x50 ReLU) on 5,000 points of the pPCA data (D=10) ...")
        settings = TrainConfig(**MODEL_DEFAULTS["demo"])
        fit(ModelConfig(kind="vae1", data_dim=10, latent_dim=2), x, settings, dev, ckpt, "ppca", False)
        loaded = load_model(ckpt, device=dev)
        gen = torch.Generator(device=dev).manual_seed(0)
        est = estimate(loaded.model, iter_batches(x, 4096, source="ppca"), samples=100, generator=gen, device=dev)
        report.print_estimate(est, "the demo VAE-1", False)
        report.message("The two ELBOs agree near a stationary point; r and a_h near 1 say how near it is.")


def check_wild(loaded: LoadedModel, x: np.ndarray, source: str, samples: int) -> None:
    """A checkpoint from the wild: the data's row size must be its D; a fixed variance needs --decoder-variance."""
    intro = loaded.introspection
    if intro is None or intro.fmt == "entropy-elbo":
        return
    got = int(np.prod(x.shape[1:]))
    if intro.d is not None and got != intro.d:
        raise EntropyElboError(f"{source}: rows have {got} values but the checkpoint's model takes {intro.d}; "
                               "pass matching data")
    if intro.decoder.kind == "fixed" and intro.decoder.value is None:
        raise EntropyElboError(f"{intro.source}: its decoder variance was never learned ({intro.decoder.evidence}); "
                               "pass --decoder-variance VALUE for the Monte Carlo ELBO at that sigma^2")


@main.command(name="inspect")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", "data", default=None, help="Data file whose rows give the input shape (to run the model once).")
@click.option("--key", default=None, help="Array name inside a .npz file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@checkpoint_options
def inspect_cmd(checkpoint: Path, data: str | None, key: str | None, as_json: bool, load_options: LoadOptions) -> None:
    """What CHECKPOINT holds: model kind, H, D, both variances, the evidence, and the flags that override them."""
    if data is not None:
        load_options.input_shape = tuple(open_array(data, key=key).shape[1:])
    report.print_inspection(inspect_checkpoint(checkpoint, load_options), as_json)


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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="Also write a PNG bar chart of the per-latent entropies (needs matplotlib).")
@device_option
@checkpoint_options
def collapse_cmd(checkpoint: Path, data: str, key: str | None, batch_size: int, threshold: float | None,
                 delta: float | None, active_threshold: float, lucas_epsilon: float, lucas_delta: float,
                 as_json: bool, plot: Path | None, device: str, load_options: LoadOptions) -> None:
    """Which latents of CHECKPOINT have collapsed over --data: three metrics side by side.

    The paper's entropy criterion (eq. 24; needs only the encoder variances), active units (Burda et
    al. 2016) and the (epsilon, delta) KL measure (Lucas et al. 2019), in one streaming pass that runs
    only the encoder, so fixed-variance models work too. Exit status 0 whatever the verdicts.
    """
    check_settings(threshold, delta, active_threshold, lucas_epsilon, lucas_delta)
    dev = resolve_device(device)
    x = open_array(data, key=key)
    load_options.input_shape = tuple(x.shape[1:])
    loaded = load_model(checkpoint, device=dev, options=load_options)
    if batch_size < 1:
        raise EntropyElboError(f"--batch-size: got {batch_size}; it must be >= 1")
    check_shape(loaded.model, x, data)
    result = collapse(loaded.model, iter_batches(x, batch_size, source=data), device=dev, threshold=threshold,
                      delta=delta, active_threshold=active_threshold, lucas_epsilon=lucas_epsilon,
                      lucas_delta=lucas_delta)
    report.print_collapse(result, str(checkpoint), as_json)
    if plot is not None:
        report.plot_collapse(result, str(plot), checkpoint.name)
        report.message(f"wrote the per-latent entropy chart to {plot}")


def check_out(out: Path) -> None:
    """A checkpoint is written as .safetensors into an existing, writable folder: checked before training."""
    if out.suffix.lower() != ".safetensors":
        raise EntropyElboError(f"--out {out}: checkpoints are written as .safetensors; name it {out.stem}.safetensors")
    check_writable(out)


def training_data(x: np.ndarray, source: str, latents: int, init_log_sigma2: float) -> np.ndarray:
    """The data as float32 in memory, checked finite (row and column named), with 1 <= H <= D and a sane sigma^2."""
    d = int(np.prod(x.shape[1:]))
    if not 1 <= latents <= d:
        raise EntropyElboError(f"--latents {latents}: {source} has D={d} values per row; pass 1 <= --latents <= {d}")
    if not abs(init_log_sigma2) < LOG_VAR_LIMIT:
        raise EntropyElboError(f"--init-log-sigma2 {init_log_sigma2}: exp of it is 0 or infinite in float32; "
                               f"pass a value in (-{LOG_VAR_LIMIT:.1f}, {LOG_VAR_LIMIT:.1f})")
    return np.concatenate(list(iter_batches(x, 65_536, source=source)))
