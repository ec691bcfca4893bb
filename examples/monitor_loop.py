"""Watch a VAE train in your own loop: entropy ELBO, Monte Carlo ELBO, r and the active latents after every epoch.

    python examples/monitor_loop.py [--epochs 20] [--out figures]
    entropy-elbo plot figures/monitor.jsonl --out figures/monitor.png      # Fig. 1 and Fig. 7 panels

The model is a plain torch module of your own (PyTorch-VAE's encode/decode convention, a learned ln sigma^2);
`Monitor` finds its variances the way `entropy-elbo inspect` does. Numbers are nats per data point.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from entropy_elbo.data import ppca  # noqa: E402
from entropy_elbo.monitor import Monitor  # noqa: E402


class MyVAE(nn.Module):
    """Your model: any layout the checkpoint loaders understand (here the paper's VAE-1 of Fig. 1, 50/50 ReLU)."""

    def __init__(self, d: int = 10, h: int = 4) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d, 50), nn.ReLU(), nn.Linear(50, 50), nn.ReLU())
        self.fc_mu, self.fc_var = nn.Linear(50, h), nn.Linear(50, h)
        self.decoder = nn.Sequential(nn.Linear(h, 50), nn.ReLU(), nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, d))
        self.log_sigma2 = nn.Parameter(torch.zeros(()))  # learned: the entropy form needs it (Thm. 1)

    def encode(self, x: Tensor) -> list[Tensor]:
        trunk = self.encoder(x)
        return [self.fc_mu(trunk), self.fc_var(trunk)]

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)


def loss(model: MyVAE, x: Tensor) -> Tensor:
    """Negative ELBO (eq. 2) with one reparameterized sample."""
    mu, log_var = model.encode(x)
    z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
    ls2 = model.log_sigma2
    loglik = -0.5 * (math.log(2 * math.pi) + ls2 + (x - model.decode(z)).pow(2) / ls2.exp()).sum(-1)
    kl = 0.5 * (mu.pow(2) + log_var.exp() - log_var - 1).sum(-1)
    return -(loglik - kl).mean()


def setup(argv: list[str] | None, description: str) -> tuple[argparse.Namespace, Tensor, Tensor]:
    """Command line, one torch thread, seeds, the output folder, pPCA rows: (N, 10) to train, (1000, 10) held out."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--rows", type=int, default=10_000, help="training rows of the pPCA data (D=10, 2 true latents)")
    p.add_argument("--out", type=Path, default=Path("figures"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    x = torch.as_tensor(ppca(args.rows + 1_000, seed=0))
    return args, x[: args.rows], x[args.rows :]


def optimizer(model: MyVAE) -> torch.optim.Optimizer:
    """Adam; ln sigma^2 must travel several nats to the residual variance, and at the networks' lr it lags behind
    (r << 1, and the monitor warns), so it gets its own larger lr (the ELBO is concave in ln sigma^2 given the rest)."""
    nets = [p for name, p in model.named_parameters() if name != "log_sigma2"]
    return torch.optim.Adam([{"params": nets}, {"params": [model.log_sigma2], "lr": 3e-2}], lr=3e-3)


def main(argv: list[str] | None = None) -> tuple[MyVAE, Monitor]:
    args, train, held_out = setup(argv, __doc__.splitlines()[0])
    model = MyVAE()
    opt = optimizer(model)
    monitor = Monitor(model, data=held_out, log=args.out / "monitor.jsonl")  # 1,000 fixed rows, 1 MC sample
    for epoch in range(1, args.epochs + 1):
        model.train()
        for idx in torch.randperm(len(train)).split(250):
            opt.zero_grad()
            loss(model, train[idx]).backward()
            opt.step()
        row = monitor.step(epoch)  # eval mode, no gradients, training state and RNG untouched
        print(f"epoch {epoch:3d}: entropy ELBO {row['entropy_elbo']:9.3f}, MC ELBO {row['mc_elbo']:9.3f} "
              f"(+- {row['mc_stderr']:.3f}) nats per data point, r {row['r']:.3f}, "
              f"active latents {row['active_latents']} of {len(row['latent_entropies'])} (eq. 24)")
    print(f"wrote {args.out / 'monitor.jsonl'}; draw it with: entropy-elbo plot {args.out / 'monitor.jsonl'}")
    return model, monitor


if __name__ == "__main__":
    main()
