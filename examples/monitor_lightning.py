"""The monitor under pytorch-lightning: `EntropyMonitor` logs entropy_elbo/* to the Trainer's logger every epoch.

    pip install 'entropy-elbo[lightning]'
    python examples/monitor_lightning.py [--epochs 40] [--out figures]
    entropy-elbo plot figures/monitor_lightning.jsonl --out figures/monitor_lightning.png

The VAE and its loss are those of examples/monitor_loop.py, kept inside a LightningModule as `self.vae` (the
callback finds it there). The metrics go to a CSV logger here; TensorBoard or W&B take them the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monitor_loop import MyVAE, loss, optimizer, setup  # noqa: E402

from entropy_elbo.lightning import EntropyMonitor  # noqa: E402


class LitVAE(pl.LightningModule):
    """The user's LightningModule: the VAE as `self.vae`, the negative ELBO as the training loss."""

    def __init__(self) -> None:
        super().__init__()
        self.vae = MyVAE()

    def training_step(self, batch: list[Tensor], _: int) -> Tensor:
        return loss(self.vae, batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return optimizer(self.vae)


def main(argv: list[str] | None = None) -> tuple[LitVAE, EntropyMonitor, pl.Trainer]:
    args, train, held_out = setup(argv, __doc__.splitlines()[0])
    pl.seed_everything(0, verbose=False)
    callback = EntropyMonitor(held_out, every_n_epochs=1, log=args.out / "monitor_lightning.jsonl")
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, logger=CSVLogger(args.out),
                         callbacks=[callback], enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    model = LitVAE()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train), batch_size=250, shuffle=True)
    trainer.fit(model, loader)
    last = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("entropy_elbo/")}
    print(f"after {args.epochs} epochs: entropy ELBO {last['entropy_elbo/entropy_elbo']:.3f}, MC ELBO "
          f"{last['entropy_elbo/mc_elbo']:.3f} nats per data point, r {last['entropy_elbo/r']:.3f}, active latents "
          f"{last['entropy_elbo/active_latents']:.0f} of {len(callback.rows[-1]['latent_entropies'])}; metrics in "
          f"{trainer.logger.log_dir}/metrics.csv")
    return model, callback, trainer


if __name__ == "__main__":
    main()
