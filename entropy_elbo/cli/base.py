"""The command line's group, its error handling and the option bundles that several commands share.

Nothing here imports torch, numpy or rich: option choices come from `entropy_elbo.choices`, and each command
imports the library inside its body, so `--help`, `--version` and a usage error print in a fraction of a second.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from entropy_elbo.choices import ACTIVATIONS, OUTPUT_ACTIVATIONS, PREPROCESS, ROW_SETS, VARIANCE_PARAMS
from entropy_elbo.errors import EntropyElboError

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

preprocess_option = click.option(
    "--preprocess", type=click.Choice(list(PREPROCESS)), default="auto", show_default=True,
    expose_value=False, callback=lambda ctx, param, value: ctx.meta.__setitem__("preprocess", value),
    help="A table trained with --drop-column or --scale: apply that preprocessing (recorded in the checkpoint) "
         "to --data ('as-trained'), read it as is ('none'), or tell by its shape ('auto').")
rows_option = click.option(
    "--rows", "row_set", type=click.Choice(list(ROW_SETS)), default=None, expose_value=False,
    callback=lambda ctx, param, value: ctx.meta.__setitem__("rows", value),
    help="Of a run trained with --holdout, on its data: the rows it trained on, the rows it held out, or all "
         "[default: the held-out rows when the checkpoint records a split, said in a note; else all].")
quiet_option = click.option("--quiet", is_flag=True, help="No progress bar.")


def plot_option(what: str):  # noqa: ANN201
    """--plot FILE: an extra figure beside the command's output; the extension (.png, .pdf, .svg) picks the format."""
    return click.option("--plot", type=click.Path(path_type=Path), default=None, callback=_plot_folder,
                        help=f"Also draw {what} to this image file (.png, .pdf or .svg; needs matplotlib).")


def _plot_folder(ctx: click.Context, param: click.Parameter, plot: Path | None) -> Path | None:
    """A --plot file's folder must exist, and the file be writable (not a folder or FIFO), before any work is done."""
    if plot is not None and not plot.parent.is_dir():
        raise EntropyElboError(f"--plot {plot}: folder {plot.parent} does not exist; create it first")
    if plot is not None:
        from entropy_elbo.atomic import check_writable, figure_format

        check_writable(plot, "--plot")
        figure_format(plot)
    return plot


CHECKPOINT_FLAGS = ("model", "model_kwargs", "decoder_var", "decoder_var_param", "encoder_var", "encoder_var_param",
                    "decoder_variance", "activation", "output_activation", "head_activation", "trust_code",
                    "checkpoint_key")
PARAM_CHOICE = click.Choice(list(VARIANCE_PARAMS))


def checkpoint_options(f):  # noqa: ANN001, ANN201
    """Flags that say how to read a checkpoint from the wild; the command receives them as `load_options`."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        from entropy_elbo.checkpoints import LoadOptions

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
        click.option("--checkpoint-key", default=None, metavar="A.B",
                     help="Dotted path of the state_dict inside a torch.save dict that nests it (model_states.net)."),
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
