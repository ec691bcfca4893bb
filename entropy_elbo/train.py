"""Training by the sampled ELBO (eq. 2) with Adam, ending in a decaying learning rate near a stationary point."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from entropy_elbo import entropies
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.fixed_batch import FixedBatch, choose, measure
from entropy_elbo.models.protocol import VAEBase, constant_log_sigma2
from entropy_elbo.montecarlo import sample_latents
from entropy_elbo.progress import epoch_progress
from entropy_elbo.runs import (
    RunFolder,
    append_log,
    load_state,
    read_log,
    remove_temporaries,
    rewrite_log,
    save_state,
)
from entropy_elbo.threads import model_work, use_threads


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer settings (paper defaults: Adam, lr 1e-3, batch 2000, 100 samples; Appendix D)."""

    epochs: int = 100
    batch_size: int = 2000
    lr: float = 1e-3
    samples: int = 100
    seed: int = 0
    decay_fraction: float = 0.3  # last fraction of epochs with a cosine decay of lr to lr * final_lr_factor
    final_lr_factor: float = 0.01
    eval_samples: int = 1  # samples per point for the held-out ELBO of each epoch's log row
    variance_lr_factor: float = 10.0  # lr of ln sigma^2, ln A, linear ln tau^2 relative to lr (`parameter_groups`)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "samples", "eval_samples"):
            if getattr(self, name) < 1:
                raise EntropyElboError(f"--{name.replace('_', '-')}: got {getattr(self, name)}; it must be >= 1")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise EntropyElboError(f"--lr: got {self.lr}; it must be a positive number")
        if not 0 <= self.decay_fraction <= 1:
            raise EntropyElboError(f"--decay-fraction: got {self.decay_fraction}; it must lie in [0, 1]")
        if not self.variance_lr_factor > 0 or not math.isfinite(self.variance_lr_factor):
            raise EntropyElboError(f"--variance-lr-factor: got {self.variance_lr_factor}; it must be a positive number")

    def decaying(self, epoch: int) -> bool:
        """Whether `epoch` lies in the final cosine decay (the last `decay_fraction` of the epochs)."""
        return epoch >= self.epochs * (1 - self.decay_fraction)

    def lr_at(self, epoch: int) -> float:
        """Constant lr, then a cosine decay over the last `decay_fraction` of the epochs."""
        if not self.decaying(epoch):
            return self.lr
        start = self.epochs * (1 - self.decay_fraction)
        t = (epoch - start + 1) / max(1e-9, self.epochs - start)
        return self.lr * (self.final_lr_factor + (1 - self.final_lr_factor) * 0.5 * (1 + math.cos(math.pi * t)))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def train(
    model: VAEBase,
    x: np.ndarray | Tensor,
    config: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[dict[str, object]], None] | None = None,
    heldout: np.ndarray | Tensor | None = None,
    run: RunFolder | None = None,
    resume: bool = False,
    metadata: dict[str, object] | None = None,
    progress: bool | None = None,
    threads: int | None = None,
) -> list[dict[str, object]]:
    """Train `model` on the rows of x (kept on the device); returns one log row per epoch (nats per data point).

    `progress` shows a line per epoch on stderr (count, ETA, ELBO, gap, active latents); None: when stderr is a
    terminal. False silences it. On the CPU, torch's threads are set by `entropy_elbo.threads.use_threads`:
    `threads` (the CLI's --threads), else OMP_NUM_THREADS, else a choice from the size of a step.

    With `run`, every epoch appends its row to the run's log and writes the checkpoint and the resume state
    atomically; `resume=True` carries on from that state with the optimizer and every random state restored.
    """
    device = torch.device(device)
    data = _on_device(x, device)
    held = None if heldout is None or len(heldout) == 0 else _on_device(heldout, device)
    n, d = data.shape[0], int(np.prod(data.shape[1:]))
    if n == 0:
        raise EntropyElboError("data: no rows to train on")
    if device.type == "cpu":
        use_threads(model_work(model, config.batch_size, config.samples), threads)
    torch.manual_seed(config.seed)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    model.to(device).train()
    opt = torch.optim.Adam(parameter_groups(model, config), lr=config.lr)
    start, history = (0, []) if not resume else resume_from(run, model, opt, gen)
    show = sys.stderr.isatty() if progress is None else progress
    fixed = choose(data, held, config.seed, config.samples)
    with epoch_progress(config.epochs, not show, start) as shown:
        for epoch in range(start, config.epochs):
            row = train_epoch(model, data, held, opt, gen, config, epoch, d, run, fixed)
            if run is not None:
                save_epoch(run, model, opt, gen, row, config, metadata)
            history.append(row)
            if on_epoch is not None:
                on_epoch(row)
            shown(row)
    if run is not None and start >= config.epochs and history:  # killed between the last state and checkpoint
        save_epoch_checkpoint(run, model, history[-1], config, metadata)
    model.eval()
    return history


def resume_from(run: RunFolder | None, model: VAEBase, opt: torch.optim.Optimizer, gen: torch.Generator
                ) -> tuple[int, list[dict[str, object]]]:
    """Restore the run's saved state into model, optimizer and generator: (epochs done, their log rows)."""
    if run is None:
        raise EntropyElboError("resume: needs the run folder whose state to continue from")
    remove_temporaries(run)
    start = 0
    if run.state.exists():  # else killed before its first epoch was saved: start it from scratch
        start = load_state(run.state, model, opt, gen)
    history = [r for r in read_log(run.log) if int(r.get("epoch", 0)) <= start]
    rewrite_log(run.log, history)  # rows of an epoch that was cut short are redone
    return start, history


COLLAPSE_THRESHOLD = 1.0  # nats: latent h is collapsed when its mean encoder entropy exceeds it (eq. 24)


class TrainingDiverged(EntropyElboError):
    """The loss or the weights became NaN or infinite; the run stopped before writing them."""


def _on_device(x: np.ndarray | Tensor, device: torch.device) -> Tensor:
    """The whole array as one float32 tensor on the device: no per-step host copies."""
    data = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, Tensor) else x)
    return data.to(device=device, dtype=torch.float32)


def sampled_elbo_parts(
    model: VAEBase, x: Tensor, samples: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Per-point sampled ELBO (eq. 2) with gradients, log tau^2 (B, H), and for a variance network the
    per-point decoder entropy mean_s sum_d 0.5 log(2 pi e sigma_d^2(z_s)) (eq. 22), else None."""
    nu, log_tau2 = model.encode(x)  # (B, H)
    z = sample_latents(nu, log_tau2, samples, generator)  # (S, B, H)
    mu, log_sigma2 = model.decode(z.reshape(-1, z.shape[-1]))
    mu = mu.reshape(samples, *x.shape)  # (S, B, ...)
    network = model.decoder_variance == "network"
    if network:
        log_sigma2 = log_sigma2.reshape(mu.shape)  # (S, B, ...)
    loglik = entropies.gaussian_log_likelihood(x, mu, log_sigma2, dtype=None).mean(0)  # (B,)
    f = loglik - entropies.kl_to_prior(nu, log_tau2, model.prior_log_var).to(loglik.dtype)
    dec_ent = entropies.gaussian_entropy(log_sigma2.detach()).flatten(2).sum(-1).mean(0) if network else None
    return f, log_tau2, dec_ent


def train_epoch(model: VAEBase, data: Tensor, held: Tensor | None, opt: torch.optim.Optimizer,
                gen: torch.Generator, config: TrainConfig, epoch: int, d: int, run: RunFolder | None,
                fixed: FixedBatch | None = None) -> dict[str, object]:
    """One pass of Adam steps over shuffled batches; returns the epoch's log row (with `fixed`, the entropy ELBO
    and MC ELBO of the fixed batch in eval mode under `fixed_batch`)."""
    for group in opt.param_groups:
        group["lr"] = config.lr_at(epoch) * group.get("lr_factor", 1.0)
    start = time.perf_counter()
    n, device = data.shape[0], data.device
    elbo_sum = torch.zeros((), dtype=torch.float64, device=device)
    dec_sum = torch.zeros((), dtype=torch.float64, device=device)
    latent_sum = torch.zeros(model.latent_dim, dtype=torch.float64, device=device)
    train_mode(model, decaying=config.decaying(epoch))
    for idx in torch.randperm(n, generator=gen, device=device).split(config.batch_size):
        f, log_tau2, dec_ent = _hooks().parts(model, data[idx], config.samples, gen)
        loss = -f.mean()
        if not torch.isfinite(loss):
            raise diverged(epoch, f"the loss is {loss.item()}", run)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        elbo_sum += f.detach().double().sum()
        latent_sum += entropies.gaussian_entropy(log_tau2.detach()).sum(0)
        if dec_ent is not None:
            dec_sum += dec_ent.double().sum()
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise diverged(epoch, f"parameter {bad[0]!r} holds NaN or Inf", run)
    n, elbo_sum, latent_sum, dec_sum = _hooks().reduce(n, elbo_sum, latent_sum, dec_sum)
    row = epoch_summary(model, epoch, n, d, elbo_sum, latent_sum, dec_sum)
    row["heldout_elbo"] = None if held is None else heldout_elbo(model, held, config, epoch)
    if fixed is not None:
        row["fixed_batch"] = measure(model, fixed, lambda: train_mode(model, decaying=config.decaying(epoch)))
    row.update(lr=opt.param_groups[0]["lr"], seconds=time.perf_counter() - start, wall_time=time.time())
    return row


def diverged(epoch: int, what: str, run: RunFolder | None) -> TrainingDiverged:
    """The error for a run whose loss or weights stopped being finite, naming the last good checkpoint."""
    if run is not None and epoch > 0:
        kept = f"the last good checkpoint {run.checkpoint} (epoch {epoch}) is intact"
    else:
        kept = "no checkpoint was written"
    return TrainingDiverged(f"training diverged at epoch {epoch + 1}: {what}; {kept}; lower --lr or raise "
                            "--init-log-sigma2 and train again")


def epoch_summary(model: VAEBase, epoch: int, n: int, d: int, elbo_sum: Tensor, latent_sum: Tensor,
                  dec_sum: Tensor) -> dict[str, object]:
    """The epoch's sampled ELBO and its three entropies (Thm. 1-3), averaged over the epoch's batches."""
    h = model.latent_dim
    latent = (latent_sum / n).cpu()  # (H,) mean_n 0.5 log(2 pi e tau_nh^2)
    with torch.no_grad():
        prior_log_var = model.prior_log_var
        prior = entropies.prior_entropy(h, None if prior_log_var is None else prior_log_var.detach())
        if model.decoder_variance == "network":
            decoder = float(dec_sum) / n
            sigma2: object = math.exp(2 * decoder / d - entropies.LOG_2PI_E)  # geometric mean over z and d
        else:
            log_sigma2 = constant_log_sigma2(model)
            decoder = float(entropies.decoder_entropy(log_sigma2, d))
            sigma2 = log_sigma2.exp().tolist()
    encoder = float(latent.sum())
    elbo = float(elbo_sum) / n
    f_h = None if model.decoder_variance == "fixed" else entropies.entropy_elbo(encoder, prior, decoder)
    return {
        "epoch": epoch + 1, "mc_elbo": elbo, "entropy_elbo": f_h,
        "relative_gap": entropies.relative_difference(elbo, f_h),
        "encoder_entropy": encoder, "prior_entropy": prior, "decoder_entropy": decoder,
        "latent_entropies": latent.tolist(), "active_latents": int((latent <= COLLAPSE_THRESHOLD).sum()),
        "sigma2": sigma2,
    }


def train_mode(model: VAEBase, *, decaying: bool) -> None:
    """Train mode; in the decay phase batch norm keeps its running statistics (eval mode, not updated).

    The checkpoint is measured in eval mode, which normalizes with the running statistics; a model trained on
    per-batch statistics is another model, whose sigma^2 fits a noisier decoder (conv VAE on the digits: r = 0.958,
    +2.27% in eval mode). Trained on the running statistics in its last phase, the saved model is the one that
    reached the stationary point (r = 0.9988, +0.077%; docs/reproduction.md).
    """
    model.train()
    if decaying:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


@torch.no_grad()
def heldout_elbo(model: VAEBase, held: Tensor, config: TrainConfig, epoch: int) -> float:
    """Sampled ELBO (eq. 2) on held-out rows, eval mode, from its own seeded generator (training RNG untouched)."""
    gen = torch.Generator(device=held.device).manual_seed(config.seed * 1_000_003 + epoch)
    model.eval()
    total = 0.0
    for batch in held.split(config.batch_size):
        total += float(sampled_elbo_parts(model, batch, config.eval_samples, gen)[0].double().sum())
    train_mode(model, decaying=config.decaying(epoch))
    return total / held.shape[0]


def save_epoch(run: RunFolder, model: VAEBase, opt: torch.optim.Optimizer, gen: torch.Generator,
               row: dict[str, object], config: TrainConfig, metadata: dict[str, object] | None) -> None:
    """Log row first, then the resume state, then the checkpoint: a kill between them loses nothing."""
    append_log(run.log, row)
    save_state(run.state, model, opt, gen, int(row["epoch"]))
    save_epoch_checkpoint(run, model, row, config, metadata)


def save_epoch_checkpoint(run: RunFolder, model: VAEBase, row: dict[str, object], config: TrainConfig,
                          metadata: dict[str, object] | None) -> None:
    """The model checkpoint that `estimate` reads, written atomically."""
    from entropy_elbo.checkpoints.native import save_checkpoint

    save_checkpoint(model, run.checkpoint, training=config.to_dict(), data=metadata or {}, epoch=row["epoch"])


@dataclass
class TrainingData:
    """Rows to train on and held-out rows, scaled by a scaler fitted on the training rows only."""

    train: np.ndarray
    heldout: np.ndarray | None
    source: str
    scale: str
    preprocessing: dict[str, object] | None = None  # an array file's, for the checkpoint (data.preprocess.record)


def prepare_data(spec: str, *, key: str | None = None, drop_column: int | None = None, scale: str = "none",
                 holdout: float = 0.0, image_size: int = 64, crop: int | None = None, rows: int | None = None,
                 seed: int = 0) -> TrainingData:
    """A synthetic set, an array file or an image folder, split (seeded) and scaled, as float32 arrays."""
    from pathlib import Path

    from entropy_elbo.data import fit_scaler, iter_batches, load_image_folder, resolve_data, split_indices
    from entropy_elbo.data.preprocess import record

    if Path(spec).is_dir():
        if key is not None or drop_column is not None:
            raise EntropyElboError(f"{spec}: --key and --drop-column apply to array files, not image folders")
        x = load_image_folder(spec, image_size, crop)
        cropped = f", centre {crop}x{crop} resized" if crop else ""
        source = f"image folder {spec} ({x.shape[0]} images, {x.shape[1]}x{x.shape[2]}x{x.shape[3]}{cropped})"
    else:
        x, source = resolve_data(spec, key=key, drop_column=drop_column, seed=seed)
    raw_shape = (x.shape[1] + (drop_column is not None), *x.shape[2:])  # the rows as the file holds them
    if rows is not None:
        if rows < 1:
            raise EntropyElboError(f"--rows {rows}: pass a positive number of rows")
        if rows < len(x):
            x, source = x[:rows], f"{source}, its first {rows} of {len(x)} rows"
    train_idx, held_idx = split_indices(len(x), holdout, seed)
    scaler = fit_scaler(x, scale, indices=train_idx, source=spec)  # type: ignore[arg-type]
    transform = None if scale == "none" else scaler

    def rows(idx: np.ndarray) -> np.ndarray:
        return np.concatenate(list(iter_batches(x, 65536, source=spec, indices=idx, transform=transform)))

    done = None if Path(spec).is_dir() else record(raw_shape, drop_column, scaler)
    return TrainingData(rows(train_idx), rows(held_idx) if len(held_idx) else None, source, scale, done)


class StepHooks:
    """How a training step gets its ELBO and how an epoch's float64 sums are combined (one process: as is).

    `entropy_elbo.distributed` swaps in its own under torchrun (`with hooks: train(...)`): the step through
    DistributedDataParallel and the sums added over the ranks.
    """

    def parts(self, model: VAEBase, x: Tensor, samples: int, generator: torch.Generator | None
              ) -> tuple[Tensor, Tensor, Tensor | None]:
        return sampled_elbo_parts(model, x, samples, generator)

    def reduce(self, n: int, elbo_sum: Tensor, latent_sum: Tensor, dec_sum: Tensor
               ) -> tuple[int, Tensor, Tensor, Tensor]:
        return n, elbo_sum, latent_sum, dec_sum

    def __enter__(self) -> StepHooks:
        _HOOK_STACK.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _HOOK_STACK.remove(self)


_HOOK_STACK: list[StepHooks] = [StepHooks()]


def _hooks() -> StepHooks:
    """The hooks in force: the innermost `with hooks:` block's, else the one-process ones."""
    return _HOOK_STACK[-1]


VARIANCE_PARAMETERS = ("log_sigma2", "logalpha2", "log_tau2")  # ln sigma^2, ln A (VAE-2), linear ln tau^2


def parameter_groups(model: VAEBase, config: TrainConfig) -> list[dict[str, object]]:
    """Adam parameter groups: the network weights at lr, and the variance scalars ln sigma^2, ln A (VAE-2) and the
    linear VAE's ln tau^2 at lr * variance_lr_factor from the first step.

    Adam moves each parameter by about lr per step whatever its gradient, but ln sigma^2 must travel several
    nats to the residual variance, a target that keeps falling while the decoder mean improves; at the weights' lr
    it lags its optimum and ends with r = E||x - mu||^2 / (D sigma^2) away from 1 (VAE-1 on pPCA after the paper's
    3,000 steps: r = 0.963 with the factor in the final decay phase only, 1.0002 with it from the first step;
    docs/reproduction.md). Given the rest the ELBO is strictly concave in each of these scalars (curvature D r / 2
    for ln sigma^2, a_h / 2 for ln A), so the larger step is stable.
    """
    variance, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (variance if name.rsplit(".", 1)[-1] in VARIANCE_PARAMETERS else rest).append(p)
    groups: list[dict[str, object]] = [{"params": rest, "lr_factor": 1.0}]
    if variance and config.variance_lr_factor != 1.0:
        groups.append({"params": variance, "lr_factor": config.variance_lr_factor})
    else:
        groups[0]["params"] = rest + variance
    return [g for g in groups if g["params"]]
