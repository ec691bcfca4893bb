"""Our trainer beside the authors' own code (Damm et al. 2023), on the same data, batch, lr and steps, seed by seed.

    python examples/side_by_side.py --authors PATH [--seeds 0 1 2 3 4] [--steps 3000] [--model linear|vae1]
                                    [--samples 100] [--device cpu|cuda]

PATH is your own clone of https://github.com/Learning-with-Entropies/ELBO-Entropies-AISTATS23. Its
`verification/VAE.py` is imported from there at run time (it is the user's own code, run as the user asks; none of
it is in this repository) and runs unchanged apart from the device: on a machine without CUDA its
`torch.set_default_tensor_type('torch.cuda.FloatTensor')` and its `.cuda()` calls are made no-ops while it runs
(and a missing torchvision, which it imports for MNIST only, is stood in for by an empty module).

Per seed, as the authors' `__main__` does: `torch.manual_seed(seed)`, their model (`LinearVAE(H, D, samples)` or
`VAE1(H, D, [50, 50], [50, 50], samples)`), their `generate_PCA_data(10000, 10000, 2, 10, batch, seed)` (pPCA,
D = 10, H = 2), then their `train_vae` for steps / (10,000 / batch) epochs at lr 1e-3, batch 2000 (compute_ll False:
their log-likelihood curve is for plotting only). Before that the
script checks that the seed fixes their run: two models made under the same seed start from the same weights.
Ours: the same model family trained by `entropy_elbo.train.train` (our schedule: variance scalars at 10x lr, cosine
decay over the last 30%) on their training rows, batch, lr, samples and the same number of steps. Both are measured
by our `estimate` on those rows (nats per data point); gap = (MC ELBO - entropy ELBO) / |MC ELBO|.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import resource
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # their train_vae's progress bar (read when tqdm is imported)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's entropy_elbo

from entropy_elbo.elbo import estimate  # noqa: E402
from entropy_elbo.models import VAEBase, build_model, model_config  # noqa: E402
from entropy_elbo.train import TrainConfig, train  # noqa: E402

N_TRAIN, H, D, BATCH, LR = 10_000, 2, 10, 2000, 1e-3  # their verification defaults for 'PCA'
REPO = "https://github.com/Learning-with-Entropies/ELBO-Entropies-AISTATS23"


class SideBySideError(Exception):
    """A one-line refusal (bad --authors path, a module without the expected interface)."""


# ---------------------------------------------------------------------------------------------- their code


@contextlib.contextmanager
def device_patches(device: torch.device) -> Iterator[None]:
    """On CPU: their CUDA default tensor type and `.cuda()` calls become no-ops while their code runs."""
    if device.type == "cuda":
        yield
        return
    saved = torch.set_default_tensor_type, torch.Tensor.cuda, torch.nn.Module.cuda
    torch.set_default_tensor_type = lambda t: None if "cuda" in str(t) else saved[0](t)
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    try:
        with warnings.catch_warnings():  # their deprecated torch calls (cholesky, set_default_tensor_type)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        torch.set_default_tensor_type, torch.Tensor.cuda, torch.nn.Module.cuda = saved


def load_authors(path: Path, device: torch.device) -> types.ModuleType:
    """Their verification/VAE.py as a module, imported from the user's clone."""
    file = path / "verification" / "VAE.py"
    if not file.is_file():
        raise SideBySideError(f"--authors {path}: no verification/VAE.py there; pass the folder of your clone "
                              f"of {REPO}")
    stub = importlib.util.find_spec("torchvision") is None  # their file imports it for its MNIST __main__ only
    if stub:
        sys.modules["torchvision"] = types.ModuleType("torchvision")
    spec = importlib.util.spec_from_file_location("authors_verification_vae", file)
    module = importlib.util.module_from_spec(spec)
    with device_patches(device):
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - their file, reported in one line
            raise SideBySideError(f"--authors {path}: importing verification/VAE.py failed: "
                                  f"{type(e).__name__}: {e}") from e
        finally:
            if stub:
                sys.modules.pop("torchvision", None)
    missing = [n for n in ("LinearVAE", "VAE1", "train_vae", "generate_PCA_data") if not hasattr(module, n)]
    if missing:
        raise SideBySideError(f"--authors {path}: verification/VAE.py has no {', '.join(missing)}; pass a clone "
                              f"of {REPO}")
    return module


def their_model(module: types.ModuleType, kind: str, samples: int) -> torch.nn.Module:
    if kind == "linear":
        return module.LinearVAE(H, D, samples)
    return module.VAE1(H, D, [50, 50], [50, 50], samples)


def check_seeded(module: types.ModuleType, kind: str, samples: int, seed: int, device: torch.device) -> None:
    """Two of their models made after torch.manual_seed(seed) start equal, and differ from seed + 1's."""
    def first_weights(s: int) -> torch.Tensor:
        torch.manual_seed(s)
        with device_patches(device):
            return torch.cat([p.detach().flatten().cpu() for p in their_model(module, kind, samples).parameters()])
    a, b, c = first_weights(seed), first_weights(seed), first_weights(seed + 1)
    if not torch.equal(a, b) or torch.equal(a, c):
        raise SideBySideError(f"their {kind} model's initial weights are not fixed by torch.manual_seed({seed})")


def train_theirs(module: types.ModuleType, kind: str, seed: int, steps: int, samples: int,
                 device: torch.device) -> tuple[torch.nn.Module, np.ndarray]:
    """As their __main__: seed, model, data, train_vae (steps / 5 epochs); their model and training rows."""
    with device_patches(device):
        torch.manual_seed(seed)
        vae = their_model(module, kind, samples).to(device)
        loader, _, _ = module.generate_PCA_data(N_TRAIN, N_TRAIN, H, D, BATCH, seed)
        epochs = math.ceil(steps / math.ceil(N_TRAIN / BATCH))
        module.train_vae(vae, epochs, loader, None, LR, False)
    x = loader.dataset.tensors[0].detach().cpu().numpy().astype(np.float32)  # (N_TRAIN, D)
    return vae.eval(), x


class AuthorsView(VAEBase):
    """Their trained model through our GaussianVAE protocol: std = softplus(parameter), as their forward reads it."""

    decoder_variance = "scalar"

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae
        self.latent_dim = int(vae.latent_dim)
        self.linear = hasattr(vae, "q_z_std")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.vae.encoder(x)
        if self.linear:
            return out, (2 * torch.log(F.softplus(self.vae.q_z_std))).expand_as(out)
        return out[:, : self.latent_dim], 2 * torch.log(F.softplus(out[:, self.latent_dim :]))

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.decoder(z), 2 * torch.log(F.softplus(self.vae.noise_std)).reshape(())

    @property
    def encoder_log_var_constant(self) -> torch.Tensor | None:
        return 2 * torch.log(F.softplus(self.vae.q_z_std)) if self.linear else None


# ---------------------------------------------------------------------------------------------- ours, measuring


def train_ours(kind: str, x: np.ndarray, seed: int, steps: int, samples: int, device: torch.device) -> VAEBase:
    extra = {} if kind == "linear" else {"hidden": (50, 50), "activation": "relu"}
    torch.manual_seed(seed)
    model = build_model(model_config(kind, (D,), H, **extra))
    epochs = math.ceil(steps / math.ceil(len(x) / BATCH))
    train(model, x, TrainConfig(epochs=epochs, batch_size=BATCH, lr=LR, samples=samples, seed=seed), device=device,
          progress=False)
    return model.eval()


def measure(model: torch.nn.Module, x: np.ndarray, seed: int, samples: int) -> dict[str, float]:
    """Our estimate on the training rows (CPU, float64 sums): MC ELBO, its s.e., entropy ELBO, gap, r."""
    est = estimate(model.cpu(), [x], samples=samples, generator=torch.Generator().manual_seed(seed))
    return {"mc": est.mc_elbo, "se": est.mc_stderr, "entropy": est.entropy_elbo, "gap": est.relative_difference,
            "r": est.stationarity["r"]}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------- the table


def row_text(who: str, seed: object, m: dict[str, float], cpu: float | str) -> str:
    cpu_text = f"{cpu:7.0f}" if isinstance(cpu, float) else f"{cpu:>7}"
    return (f"{who:<8} {seed!s:<11} {m['mc']:9.4f} ± {m['se']:.4f} {m['entropy']:12.4f} {100 * m['gap']:+9.3f}% "
            f"{m['r']:8.4f} {cpu_text}")


def summary(who: str, rows: list[dict[str, float]]) -> list[str]:
    """Median [25th, 75th percentile] of each figure over the seeds."""
    out = []
    for key, scale, unit in (("mc", 1, ""), ("entropy", 1, ""), ("gap", 100, "%"), ("r", 1, "")):
        q25, med, q75 = np.percentile([scale * r[key] for r in rows], [25, 50, 75])
        out.append(f"{key} {med:.4f}{unit} [{q25:.4f}, {q75:.4f}]")
    return [f"{who:<8} median [IQR] over {len(rows)} seeds: " + ", ".join(out)]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--authors", type=Path, required=True, help=f"your clone of {REPO}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=3000, help="Adam steps for both (5 per epoch of 10,000 rows)")
    p.add_argument("--model", choices=("linear", "vae1"), default="linear")
    p.add_argument("--samples", type=int, default=100, help="samples per point, in training and in estimate")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.steps < 1 or args.samples < 1:
        p.error("--steps and --samples must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        module = load_authors(args.authors, device)
        check_seeded(module, args.model, args.samples, args.seeds[0], device)
    except SideBySideError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    epochs = math.ceil(args.steps / math.ceil(N_TRAIN / BATCH))
    print(f"{args.model} VAE, pPCA D={D} H={H}, {N_TRAIN:,} rows, batch {BATCH}, lr {LR}, {args.samples} samples, "
          f"{epochs * math.ceil(N_TRAIN / BATCH)} steps ({epochs} epochs), {device}, {args.threads} thread(s); "
          f"the seed fixes their run (checked); nats per data point")
    print(f"{'code':<8} {'seed':<11} {'MC ELBO ± s.e.':>18} {'entropy ELBO':>12} {'gap':>10} {'r':>8} {'CPU s':>7}")
    results: dict[str, list[dict[str, float]]] = {"authors": [], "ours": []}
    for seed in args.seeds:
        start = cpu_seconds()
        theirs, x = train_theirs(module, args.model, seed, args.steps, args.samples, device)
        results["authors"].append(measure(AuthorsView(theirs), x, seed, args.samples))
        print(row_text("authors", seed, results["authors"][-1], cpu_seconds() - start), flush=True)
        start = cpu_seconds()
        ours = train_ours(args.model, x, seed, args.steps, args.samples, device)
        results["ours"].append(measure(ours, x, seed, args.samples))
        print(row_text("ours", seed, results["ours"][-1], cpu_seconds() - start), flush=True)
    for who, rows in results.items():
        print("\n".join(summary(who, rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
