"""Monte Carlo ELBO and IWAE against a plain float32 torch loop doing the same arithmetic (the floor), and IWAE
against pythae's `get_nll`, side by side in one run (issue #24, item 1).

The floor: encoder, z = nu + tau eps (torch.randn), decoder, the Gaussian log-likelihood in float32, sums in float64,
at the best of several sample-block sizes (tuned here, per case). The tool: `entropy_elbo.estimate(seed=...)` and
`iwae_bound(seed=...)` as the CLI calls them (per-row counter-based streams, float64 sums). Each figure is CPU time of
one torch thread, min and median over interleaved repeats (floor, tool, floor, tool, ...), so load drifts alike.
Targets: MC ELBO and IWAE within 1.2x of the floor; IWAE faster than pythae's get_nll (K importance samples).
Run: python benchmarks/sampling_floor.py [--quick] [--json]
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch
from _common import emit, judge, parse_args

from entropy_elbo.data import iter_batches
from entropy_elbo.elbo import estimate
from entropy_elbo.models import ModelConfig, build_model
from entropy_elbo.montecarlo import iwae_bound

TARGET = 1.2
FLOOR_BLOCKS = (2**14, 2**16, 2**18, 2**20, 2**22, 2**24)  # decoder outputs held at once, tried for the floor
LOG_2PI = math.log(2 * math.pi)


def cpu_seconds(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def _blocks(samples: int, rows: int, d: int, block: int):
    step = max(1, min(samples, block // max(1, rows * d)))
    for done in range(0, samples, step):
        yield min(step, samples - done)


@torch.inference_mode()
def floor_mc(model: torch.nn.Module, x: torch.Tensor, samples: int, rows: int, block: int) -> float:
    """Plain float32 MC ELBO: mean over rows of mean_s log N(x; mu, sigma^2) - KL (float64 totals only)."""
    total = 0.0
    for xb in x.split(rows):
        nu, lt = model.encode(xb)
        ll = torch.zeros(len(xb), dtype=torch.float64)
        for s in _blocks(samples, len(xb), xb.shape[1], block):
            z = nu + (0.5 * lt).exp() * torch.randn(s, *nu.shape)
            mu, ls = model.decode(z.reshape(-1, nu.shape[1]))
            per = ((mu.reshape(s, *xb.shape) - xb).square() * (-ls).exp() + ls + LOG_2PI).sum(-1)
            ll += per.sum(0, dtype=torch.float64)
        kl = 0.5 * (nu.square() + lt.exp() - lt - 1).sum(-1)
        total += float((-0.5 * ll / samples - kl).sum(dtype=torch.float64))
    return total / len(x)


@torch.inference_mode()
def floor_iwae(model: torch.nn.Module, x: torch.Tensor, samples: int, rows: int, block: int) -> float:
    """Plain float32 IWAE: log-mean-exp over K of log p(x|z) + log p(z) - log q(z|x), float64 totals."""
    total = 0.0
    for xb in x.split(rows):
        nu, lt = model.encode(xb)
        parts = []
        for s in _blocks(samples, len(xb), xb.shape[1], block):
            eps = torch.randn(s, *nu.shape)
            z = nu + (0.5 * lt).exp() * eps
            mu, ls = model.decode(z.reshape(-1, nu.shape[1]))
            ll = ((mu.reshape(s, *xb.shape) - xb).square() * (-ls).exp() + ls + LOG_2PI).sum(-1)
            parts.append(torch.logsumexp(-0.5 * (ll + z.square().sum(-1) - eps.square().sum(-1) - lt.sum(-1)), 0))
        total += float((torch.logsumexp(torch.stack(parts), 0) - math.log(samples)).sum(dtype=torch.float64))
    return total / len(x)


def tuned_block(floor: Callable[[int], object]) -> int:
    """The floor's fastest block size, one try each."""
    return min(FLOOR_BLOCKS, key=lambda b: cpu_seconds(lambda: floor(b)))


def side_by_side(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, float]]:
    """CPU seconds of each, interleaved: name -> {min, median}."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(cpu_seconds(fn))
    return {k: {"min": min(v), "median": statistics.median(v)} for k, v in times.items()}


def vae1(d: int) -> torch.nn.Module:
    torch.manual_seed(0)
    hidden = (128, 40) if d == 100 else (256, 64)
    return build_model(ModelConfig(kind="vae1", data_dim=d, latent_dim=20, hidden=hidden, activation="leaky_relu",
                                   init_log_sigma2=-2.0)).eval()


def tool_vs_floor(d: int, samples: int, n: int, repeats: int) -> list[dict[str, object]]:
    """MC ELBO and IWAE of VAE-1 at (D, S or K) against the tuned floor."""
    model = vae1(d)
    x = torch.randn(n, d)
    rows = min(n, 1000)
    out = []
    for what, floor, tool in (
        ("mc_elbo", floor_mc, lambda: estimate(model, iter_batches(x.numpy(), rows), samples=samples, seed=0)),
        ("iwae", floor_iwae, lambda: iwae_bound(model, iter_batches(x.numpy(), rows), samples=samples, seed=0)),
    ):
        block = tuned_block(lambda b, f=floor: f(model, x, samples, rows, b))
        t = side_by_side({"floor": lambda f=floor, b=block: f(model, x, samples, rows, b), "tool": tool}, repeats)
        out.append({"what": what, "d": d, "samples": samples, "n": n, "floor_block": block,
                    **{f"{k}_{s}_s": v[s] for k, v in t.items() for s in ("min", "median")},
                    "ratio_min": t["tool"]["min"] / t["floor"]["min"],
                    "ratio_median": t["tool"]["median"] / t["floor"]["median"]})
    return out


class _PythaeAsProtocol(torch.nn.Module):
    """A pythae VAE read as a Gaussian VAE with sigma^2 = 1 (what its get_nll assumes for the mse loss)."""

    decoder_variance = "fixed"
    prior_log_var = None

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.latent_dim = model.latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.encoder(x)
        return out.embedding, out.log_covariance

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.decoder(z).reconstruction, torch.zeros(())


def against_pythae(samples: int, n: int, repeats: int) -> dict[str, object]:
    """IWAE (K samples) of pythae's default-network VAE (D=100, H=20) against its own get_nll, same model."""
    import pythae.models as pm

    torch.manual_seed(0)
    model = pm.VAE(pm.VAEConfig(input_dim=(100,), latent_dim=20)).eval()
    x = torch.randn(n, 100)
    ours = _PythaeAsProtocol(model)
    t = side_by_side({"pythae": lambda: model.get_nll(x, n_samples=samples),
                      "tool": lambda: iwae_bound(ours, iter_batches(x.numpy(), n), samples=samples, seed=0)},
                     repeats)
    return {"what": "iwae_vs_pythae", "d": 100, "samples": samples, "n": n,
            **{f"{k}_{s}_s": v[s] for k, v in t.items() for s in ("min", "median")},
            "ratio_min": t["tool"]["min"] / t["pythae"]["min"],
            "ratio_median": t["tool"]["median"] / t["pythae"]["median"]}


def main() -> None:
    args = parse_args(__doc__)
    torch.set_num_threads(1)
    repeats = 3 if args.quick else 5
    scale = 10 if args.quick else 1
    cases = [(100, 100, 2_000), (100, 1_000, 200), (3_072, 100, 100), (3_072, 1_000, 10)]
    results = [r for d, s, n in cases for r in tool_vs_floor(d, s, max(1, n // scale), repeats)]
    results += [against_pythae(k, max(2, 100 // scale), repeats) for k in (100, 1_000)]
    lines = [(f"{r['what']} D={r['d']} S/K={r['samples']} N={r['n']}",
              f"x{r['ratio_min']:.2f} min, x{r['ratio_median']:.2f} median "
              f"(tool {r['tool_min_s']:.3f} s, {'pythae' if 'pythae_min_s' in r else 'floor'} "
              f"{r.get('pythae_min_s', r.get('floor_min_s')):.3f} s CPU)") for r in results]
    emit("sampling_floor", {"target": TARGET, "results": results}, lines, args.json)
    judge({f"{r['what']} D={r['d']} S/K={r['samples']}": (r["ratio_min"], 1.0 if "pythae_min_s" in r else TARGET)
           for r in results})


if __name__ == "__main__":
    main()
