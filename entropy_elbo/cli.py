"""The command line: a thin layer over the library. The only module that imports click."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click
import numpy as np
import torch

from entropy_elbo import compare as comparing
from entropy_elbo import report
from entropy_elbo.checkpoints import load_model, save_checkpoint
from entropy_elbo.data import SYNTHETIC, iter_batches, make_synthetic, open_array, resolve_data, save_array
from entropy_elbo.devices import resolve_device
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.estimate import estimate, with_iwae
from entropy_elbo.models import MODELS, ModelConfig, build_model
from entropy_elbo.montecarlo import iwae_bound
from entropy_elbo.train import MODEL_DEFAULTS, TrainConfig, train


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


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@data_options
@click.option("--samples", type=int, default=100, show_default=True,
              help="Monte Carlo samples per data point (0: entropy ELBO only).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the Monte Carlo samples.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--iwae", type=int, default=0, show_default=True,
              help="Also the importance-weighted bound on log p(x) with K samples per point (0: off).")
@device_option
def estimate_cmd(checkpoint: Path, data: str, key: str | None, batch_size: int, samples: int, seed: int,
                 as_json: bool, iwae: int, device: str) -> None:
    """Entropy ELBO, Monte Carlo ELBO and stationarity of CHECKPOINT over --data."""
    dev = resolve_device(device)
    loaded = load_model(checkpoint, device=dev)
    x = open_array(data, key=key)
    if batch_size < 1:
        raise EntropyElboError(f"--batch-size: got {batch_size}; it must be >= 1")
    check_shape(loaded.model, x, data)
    gen = torch.Generator(device=dev).manual_seed(seed)
    est = estimate(loaded.model, iter_batches(x, batch_size, source=data), samples=samples, generator=gen,
                   device=dev)
    if iwae != 0:
        bound = iwae_bound(loaded.model, iter_batches(x, batch_size, source=data), samples=iwae, generator=gen,
                           device=dev)
        est = with_iwae(est, bound.value, bound.stderr, bound.samples)
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
@click.option("--seed", type=int, default=0, show_default=True)
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
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@device_option
def train_cmd(model: str, data_spec: str, key: str | None, latents: int, out: Path, epochs: int | None,
              batch_size: int | None, lr: float | None, samples: int | None, hidden: str, activation: str,
              init_log_sigma2: float, seed: int, quiet: bool, device: str) -> None:
    """Train MODEL on --data with the sampled ELBO, ending with a decaying learning rate."""
    dev = resolve_device(device)
    x, source = resolve_data(data_spec, key=key, seed=seed)
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
    if not out.parent.is_dir():
        raise EntropyElboError(f"--out {out}: folder {out.parent} does not exist; create it first")
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


@main.command(name="compare")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@data_options
@click.option("--sizes", default=None,
              help="Subset sizes n (data points), comma-separated, each at most the number of rows "
                   "[default: 10,100,1000,10000 up to the number of rows].")
@click.option("--repeats", type=int, default=10, show_default=True, help="Random subsets drawn per size.")
@click.option("--mc-samples", default="1,100", show_default=True, help="Monte Carlo sample counts to compare.")
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="Draw the paper's Fig. 2(b)/6 (estimates and std vs n) to this image file (needs matplotlib).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the subsets and the samples.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@device_option
def compare_cmd(checkpoint: Path, data: str, key: str | None, batch_size: int, sizes: str | None, repeats: int,
                mc_samples: str, plot: Path | None, seed: int, as_json: bool, device: str) -> None:
    """Spread and cost of the entropy ELBO and the Monte Carlo ELBO on random subsets of --data (Fig. 2(b), 6)."""
    dev = resolve_device(device)
    loaded = load_model(checkpoint, device=dev)
    x = open_array(data, key=key)
    if batch_size < 1:
        raise EntropyElboError(f"--batch-size: got {batch_size}; it must be >= 1")
    check_shape(loaded.model, x, data)
    cmp = comparing.compare(loaded.model, x, sizes=None if sizes is None else comparing.parse_sizes(sizes),
                            repeats=repeats,
                            mc_samples=comparing.parse_sizes(mc_samples, "--mc-samples"), seed=seed, device=dev,
                            batch_size=batch_size, source=data)
    if plot is not None:
        report.message(f"wrote {comparing.plot_comparison(cmp, plot)}")
    report.print_comparison(cmp, as_json)
