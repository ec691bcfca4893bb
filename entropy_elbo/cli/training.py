"""data, train, demo, plot and select: the commands that make data and train models. Each imports the library
inside its body, so that `--help` and a usage error never import torch."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from entropy_elbo.choices import BUNDLED_SETS, MODEL_KINDS, SCALES, SYNTHETIC_SETS
from entropy_elbo.cli.base import (
    activation_option,
    device_option,
    json_option,
    main,
    plot_option,
    quiet_option,
    seed_option,
    threads_option,
)
from entropy_elbo.presets import PRESETS

if TYPE_CHECKING:
    import numpy as np
    import torch

    from entropy_elbo.models import ModelConfig
    from entropy_elbo.train import TrainConfig

DATA_SOURCES = (f"A named set (synthetic: {', '.join(SYNTHETIC_SETS)}; scikit-learn's bundled: "
                f"{', '.join(BUNDLED_SETS)}), a .npy/.npz/.csv/.txt file (or .csv.gz, .txt.gz), MNIST's idx files "
                "(train-images-idx3-ubyte[.gz]) or an image folder.")


@main.command()
@click.argument("name", type=click.Choice(SYNTHETIC_SETS))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output .npy or .csv file.")
@click.option("-n", "--n", "n", type=int, default=None, help="Number of points (default: the paper's).")
@seed_option("the data")
def data(name: str, out: Path, n: int | None, seed: int) -> None:
    """Write one of the paper's synthetic data sets (seeded) to --out."""
    import numpy as np

    from entropy_elbo import report
    from entropy_elbo.data import save_chunks, synthetic_chunks

    shape, chunks = synthetic_chunks(name, n=n, seed=seed)
    save_chunks(chunks, shape, np.float32, out, what=f"data {name} -n {shape[0]}")
    report.message(f"wrote {name} data, shape {shape}, seed {seed}, to {out}")


@main.command(name="train")
@click.argument("model", type=click.Choice(MODEL_KINDS), required=False)
@click.option("--data", "data_spec", default=None,
              help=DATA_SOURCES)
@click.option("--key", default=None, help="Array name inside a .npz file.")
@click.option("--drop-column", type=int, default=None, help="Drop this column of a table (e.g. SUSY's label: 0).")
@click.option("--scale", type=click.Choice(SCALES), default="none", show_default=True,
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
              help="Last fraction of the epochs with a cosine lr decay to lr/100. Default 0.3: OUR schedule, "
                   "not the paper's; 0 keeps the paper's constant lr. Recorded in run.json.")
@click.option("--variance-lr-factor", type=float, default=None,
              help="lr factor of ln sigma^2, ln A and the linear ln tau^2, from the first step. Default 10: OUR "
                   "schedule, not the paper's; 1 is the paper's constant lr for every parameter. Recorded in "
                   "run.json.")
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

    The schedule is OURS, not the paper's, presets included: the variance scalars (ln sigma^2, ln A, the linear
    ln tau^2) at 10x lr from the first step and a cosine decay over the last 30% of the epochs. The paper's constant
    lr for every parameter is `--decay-fraction 0 --variance-lr-factor 1`; run.json records both values always.

    Every epoch appends a row to <run>/log.jsonl and writes the checkpoint and the resume state atomically.
    Under torchrun every process trains on its own block of rows with --batch-size rows per step
    (DistributedDataParallel averages the gradients); process 0 alone writes and reports.
    """
    from entropy_elbo import report
    from entropy_elbo.launch import train_run

    given = {k: v for k, v in flags.items() if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
    result = train_run(model, out=out, resume=resume, device=device, progress=not quiet,
                       threads=ctx.meta.get("threads"), notify=report.message, data=data_spec, **given)
    if not result.main_process:
        return
    last = result.history[-1]
    gap = last["relative_gap"]
    report.message(f"wrote {result.run.checkpoint} (epoch {last['epoch']}) and {result.run.folder}/log.jsonl: sampled "
                   f"ELBO {last['mc_elbo']:.4f}, entropy ELBO {report._fmt(last['entropy_elbo'])} nats per data point, "
                   f"gap {'n/a' if gap is None else f'{100 * gap:+.2f}%'}, {last['active_latents']} active latents "
                   "(averages over the last epoch's batches; `entropy-elbo estimate` gives the checkpoint's own)")


def fit(config: ModelConfig, x: np.ndarray, settings: TrainConfig, dev: torch.device, out: Path, source: str,
        quiet: bool) -> list[dict[str, object]]:
    """Build, train and save a model; returns the training log."""
    import numpy as np
    import torch

    from entropy_elbo.atomic import check_writable
    from entropy_elbo.checkpoints import save_checkpoint
    from entropy_elbo.models import build_model
    from entropy_elbo.train import train

    check_writable(out)
    torch.manual_seed(settings.seed)
    model = build_model(config)
    history = train(model, np.asarray(x), settings, device=dev, progress=not quiet,
                    threads=click.get_current_context().meta.get("threads"))
    save_checkpoint(model, out, training=settings.to_dict(), data={"source": source, "shape": list(x.shape)})
    return history


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Keep the files in this folder.")
@click.option("--out-dir", "out_dir", type=click.Path(path_type=Path), default=None, hidden=True)  # its old name
@device_option
@threads_option
def demo(out: Path | None, out_dir: Path | None, device: str) -> None:
    """Train a small VAE-1 on bundled synthetic data, then estimate its ELBO both ways (about 20 s of CPU)."""
    from entropy_elbo import report
    from entropy_elbo.checkpoints import load_model
    from entropy_elbo.data import iter_batches, make_synthetic
    from entropy_elbo.devices import resolve_device
    from entropy_elbo.elbo import estimate
    from entropy_elbo.models import ModelConfig
    from entropy_elbo.run_settings import MODEL_DEFAULTS
    from entropy_elbo.train import TrainConfig

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


@main.command()
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--out", default=None, type=click.Path(path_type=Path),
              help="Image file to write: .png, .pdf or .svg (the extension picks the format) [default: a log "
                   "file's name with .png (monitor.jsonl -> monitor.png), or RUN/elbo.png].")
@click.option("--threshold", type=float, default=1.0, show_default=True, help="Collapse threshold in nats (eq. 24).")
def plot(run_path: Path, out: Path | None, threshold: float) -> None:
    """Fig. 1 (ELBO vs the three entropies; relative gap) and Fig. 7 (per-latent entropies) of a training RUN."""
    from entropy_elbo import report
    from entropy_elbo.plot import plot_run, run_log, run_title

    rows = run_log(run_path)
    if out is None:
        out = run_path.with_suffix(".png") if run_path.suffix in (".jsonl", ".safetensors") else run_path / "elbo.png"
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
    import numpy as np

    from entropy_elbo import report
    from entropy_elbo import select as sel_mod
    from entropy_elbo.data import iter_batches, resolve_data
    from entropy_elbo.devices import resolve_device
    from entropy_elbo.run_settings import parse_ints
    from entropy_elbo.threads import use_threads

    dev = resolve_device(device)
    candidates = parse_ints(latents, "--latents")
    if plot is not None:
        report.import_pyplot()
    x, _ = resolve_data(data, key=key)
    sel_mod.check_latents(candidates, x, data)
    total = len(x)
    segments = sel_mod.phases_segments(phases, true_dims, total, data)
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
