"""Training by the sampled ELBO (eq. 2) with Adam, ending in a decaying learning rate near a stationary point."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from entropy_elbo import entropies
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models.protocol import VAEBase
from entropy_elbo.montecarlo import sample_latents


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

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "samples"):
            if getattr(self, name) < 1:
                raise EntropyElboError(f"--{name.replace('_', '-')}: got {getattr(self, name)}; it must be >= 1")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise EntropyElboError(f"--lr: got {self.lr}; it must be a positive number")
        if not 0 <= self.decay_fraction <= 1:
            raise EntropyElboError(f"decay_fraction: got {self.decay_fraction}; it must lie in [0, 1]")

    def lr_at(self, epoch: int) -> float:
        """Constant lr, then a cosine decay over the last `decay_fraction` of the epochs."""
        start = self.epochs * (1 - self.decay_fraction)
        if epoch < start:
            return self.lr
        t = (epoch - start + 1) / max(1e-9, self.epochs - start)
        return self.lr * (self.final_lr_factor + (1 - self.final_lr_factor) * 0.5 * (1 + math.cos(math.pi * t)))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def sampled_elbo(model: VAEBase, x: Tensor, samples: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Per-point sampled ELBO (eq. 2) with gradients, and the encoder log-variances: (B,), (B, H)."""
    nu, log_tau2 = model.encode(x)
    z = sample_latents(nu, log_tau2, samples, generator)  # (S, B, H)
    mu, log_sigma2 = model.decode(z.reshape(-1, z.shape[-1]))
    mu = mu.reshape(samples, *x.shape)
    if log_sigma2.dim() > 0 and log_sigma2.shape[0] == mu.shape[0] * mu.shape[1]:
        log_sigma2 = log_sigma2.reshape(samples, *log_sigma2.shape[1:])
    per_dim = -0.5 * (entropies.LOG_2PI + log_sigma2 + (x - mu).pow(2) * (-log_sigma2).exp())
    loglik = per_dim.expand_as(mu).flatten(2).sum(-1).mean(0)  # (B,)
    return loglik - entropies.kl_to_prior(nu, log_tau2, model.prior_log_var).to(loglik.dtype), log_tau2


def train(
    model: VAEBase,
    x: np.ndarray | Tensor,
    config: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[dict[str, object]], None] | None = None,
) -> list[dict[str, object]]:
    """Train `model` on the rows of x (kept on the device); returns one log row per epoch (nats per data point)."""
    device = torch.device(device)
    data = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, Tensor) else x)
    data = data.to(device=device, dtype=torch.float32)
    n, d = data.shape[0], int(np.prod(data.shape[1:]))
    if n == 0:
        raise EntropyElboError("data: no rows to train on")
    torch.manual_seed(config.seed)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    model.to(device).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    history: list[dict[str, object]] = []
    for epoch in range(config.epochs):
        for group in opt.param_groups:
            group["lr"] = config.lr_at(epoch)
        start = time.perf_counter()
        elbo_sum = torch.zeros((), dtype=torch.float64, device=device)
        ent_sum = torch.zeros((), dtype=torch.float64, device=device)
        for idx in torch.randperm(n, generator=gen, device=device).split(config.batch_size):
            batch = data[idx]
            f, log_tau2 = sampled_elbo(model, batch, config.samples, gen)
            loss = -f.mean()
            if not torch.isfinite(loss):
                raise EntropyElboError(
                    f"training diverged at epoch {epoch + 1}: the loss is {loss.item()}; lower --lr "
                    "or raise the initial decoder variance"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            elbo_sum += f.detach().double().sum()
            ent_sum += entropies.encoder_entropy(log_tau2.detach()).sum()
        row = epoch_row(model, epoch, n, d, elbo_sum, ent_sum, time.perf_counter() - start)
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    model.eval()
    return history


def epoch_row(
    model: VAEBase, epoch: int, n: int, d: int, elbo_sum: Tensor, ent_sum: Tensor, seconds: float
) -> dict[str, object]:
    """One log row: the epoch's sampled ELBO and the entropy ELBO at the epoch's end (Thm. 2, eq. 14)."""
    h = model.latent_dim
    with torch.no_grad():
        prior_log_var = model.prior_log_var
        prior = entropies.prior_entropy(h, None if prior_log_var is None else prior_log_var.detach())
        decoder = None
        if model.decoder_variance in ("scalar", "per-dim"):
            log_sigma2 = model.decoder_log_var(torch.zeros(1, h, device=elbo_sum.device))
            decoder = float(entropies.decoder_entropy(log_sigma2.detach(), d))
    encoder = float(ent_sum) / n
    elbo = float(elbo_sum) / n
    f_h = None if decoder is None else entropies.entropy_elbo(encoder, prior, decoder)
    return {
        "epoch": epoch + 1, "elbo": elbo, "entropy_elbo": f_h,
        "relative_gap": None if f_h is None or elbo == 0 else (elbo - f_h) / abs(elbo),
        "encoder_entropy": encoder, "prior_entropy": prior, "decoder_entropy": decoder, "seconds": seconds,
    }


# Defaults per model, chosen so that `train` ends near a stationary point on the paper's small data sets.
MODEL_DEFAULTS: dict[str, dict[str, object]] = {
    "linear": {"epochs": 400, "batch_size": 500, "lr": 1e-2, "samples": 10},
    "vae1": {"epochs": 300, "batch_size": 250, "lr": 3e-3, "samples": 10},
    "demo": {"epochs": 300, "batch_size": 250, "lr": 3e-3, "samples": 10},
}
