"""A Lightning callback: the `Monitor`'s figures every n epochs, logged to whatever logger the Trainer has.

Needs `lightning` (`import lightning as L`) or `pytorch_lightning` (`pip install 'entropy-elbo[lightning]'`); with
both installed the callback is a Callback of each, so either Trainer takes it. Stable metric names, all nats per
data point except the counts and r, a_h (ratios):

- `entropy_elbo/entropy_elbo`: the entropy ELBO (Thm. 2, eq. 14); `entropy_elbo/mc_elbo`, `entropy_elbo/mc_stderr`
  (the names of `estimate --json`, the run logs and the Monitor rows; `entropy_elbo/elbo` in 0.1.0);
- `entropy_elbo/encoder_entropy`, `entropy_elbo/prior_entropy`, `entropy_elbo/decoder_entropy`;
- `entropy_elbo/r`, `entropy_elbo/gap` (eq. 76), `entropy_elbo/a/{h}` per latent;
- `entropy_elbo/active_latents` (entropy criterion, eq. 24), `entropy_elbo/active_latents/active_units`,
  `entropy_elbo/active_latents/lucas`;
- `entropy_elbo/latent_entropy/{h}`: mean encoder entropy of latent h (Fig. 7).

Under DDP every rank measures its block of the batch, the sums are added over the ranks (so every rank holds the
whole batch's figures), and rank 0 alone writes the JSON-lines log and warns.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from entropy_elbo.errors import EntropyElboError
from entropy_elbo.monitor import Monitor, finite


class LightningMissingError(EntropyElboError, ImportError):
    """Neither lightning nor pytorch-lightning is installed."""


def callback_bases() -> tuple[type, ...]:
    """Lightning's Callback class of each flavour installed: `lightning.pytorch` and `pytorch_lightning`."""
    import importlib

    bases = []
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            bases.append(importlib.import_module(name).Callback)
        except ImportError:
            continue
    if not bases:
        raise LightningMissingError("entropy_elbo.lightning needs lightning or pytorch-lightning: pip install "
                                    "'entropy-elbo[lightning]' (or lightning)")
    return tuple(bases)

PREFIX = "entropy_elbo/"
WRAPPED = ("model", "vae", "net", "module", "autoencoder")  # attributes where a LightningModule usually keeps its VAE


def metrics(row: dict[str, object]) -> dict[str, float]:
    """A monitor row as flat, stably named numbers for a metrics logger (missing and non-finite ones left out)."""
    active = row["active_latents_by_metric"]
    named: dict[str, object] = {
        "entropy_elbo": row["entropy_elbo"], "mc_elbo": row["mc_elbo"], "mc_stderr": row["mc_stderr"],
        "encoder_entropy": row["encoder_entropy"], "prior_entropy": row["prior_entropy"],
        "decoder_entropy": row["decoder_entropy"], "r": row["r"], "gap": row["gap"],
        "active_latents": active["entropy"], "active_latents/active_units": active["active_units"],
        "active_latents/lucas": active["lucas"],
        **{f"latent_entropy/{h}": v for h, v in enumerate(row["latent_entropies"])},
        **{f"a/{h}": v for h, v in enumerate(row["a"])},
    }
    return {PREFIX + k: float(v) for k, v in named.items() if finite(v)}


def find_vae(pl_module: nn.Module, attribute: str | None = None) -> nn.Module:
    """The VAE inside a LightningModule: `attribute` if named, the module itself if it has an encoder, else its one
    child under a usual name (model, vae, ...) that has one."""
    if attribute is not None:
        found = getattr(pl_module, attribute, None)
        if not isinstance(found, nn.Module):
            raise EntropyElboError(f"module={attribute!r}: the LightningModule has no sub-module of that name")
        return found
    if _has_encoder(pl_module):
        return pl_module
    found = [getattr(pl_module, n) for n in WRAPPED if isinstance(getattr(pl_module, n, None), nn.Module)]
    found = [m for m in found if _has_encoder(m)]
    if len(found) != 1:
        raise EntropyElboError(f"{type(pl_module).__name__}: no encode() or encoder here nor in exactly one of "
                               f"{', '.join(WRAPPED)}; pass EntropyMonitor(..., module='NAME') naming the VAE")
    return found[0]


def _has_encoder(module: nn.Module) -> bool:
    return callable(getattr(module, "encode", None)) or isinstance(getattr(module, "encoder", None), nn.Module)


class EntropyMonitor(*callback_bases()):
    """Measure the model on `val_batch` at the end of every `every_n_epochs`-th training epoch and log the figures.

    `module` names the VAE's attribute inside the LightningModule (found by itself otherwise); `log` a JSON-lines
    file in the schema of our run logs (`entropy-elbo plot`); the other keywords go to `Monitor` (samples, seed,
    threshold, options, ...).
    """

    def __init__(self, val_batch: object, every_n_epochs: int = 1, *, module: str | None = None,
                 log: str | Path | None = None, **monitor_kwargs: object) -> None:
        if every_n_epochs < 1:
            raise EntropyElboError(f"every_n_epochs: got {every_n_epochs}; pass 1 or more")
        self.val_batch, self.every_n_epochs, self.attribute, self.log_path = val_batch, every_n_epochs, module, log
        self.monitor_kwargs = monitor_kwargs
        self.monitor: Monitor | None = None
        self._resumed: dict[str, object] = {}  # the monitor's state from a checkpoint, until the monitor is built

    @property
    def rows(self) -> list[dict[str, object]]:
        """Every row measured so far (the same on every rank)."""
        return [] if self.monitor is None else self.monitor.rows

    def state_dict(self) -> dict[str, object]:
        """Saved in the Trainer's checkpoints: a run resumed from one warns nothing twice."""
        return self._resumed if self.monitor is None else self.monitor.state_dict()

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        self._resumed = dict(state_dict)
        if self.monitor is not None:
            self.monitor.load_state_dict(self._resumed)

    def on_train_epoch_end(self, trainer: object, pl_module: nn.Module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        if self.monitor is None:  # built here: the model is on its device and the process group is up
            self.monitor = Monitor(find_vae(pl_module, self.attribute), self.val_batch, log=self.log_path,
                                   **self.monitor_kwargs)
            self.monitor.load_state_dict(self._resumed)
        row = self.monitor.step(trainer.current_epoch + 1)
        # Every rank holds the same, already reduced figures; Lightning's mean over ranks of equal float64 values
        # ((a + a) / 2 = a exactly) keeps them, and spares the user its warning about unsynced epoch metrics.
        values = {k: torch.tensor(v, dtype=torch.float64, device=pl_module.device) for k, v in metrics(row).items()}
        pl_module.log_dict(values, on_step=False, on_epoch=True, sync_dist=True, batch_size=1)
