"""entropy-elbo: the ELBO of a Gaussian VAE from three entropies (Damm et al., AISTATS 2023), exact at stationary
points, beside its Monte Carlo estimate. Every figure is in nats per data point.

    import entropy_elbo

    est = entropy_elbo.estimate("run1", "x.npy", samples=100, seed=0)  # a checkpoint, a run folder or an nn.Module
    est.entropy_elbo, est.mc_elbo, est.mc_stderr     # Thm. 2 eq. 14; eq. 2 with its standard error
    est.stationarity["r"], est.stationarity["a"]     # 1 at a stationary point (eq. 76)
    est.warnings, est.assumptions                    # why a figure may not be trusted; how the checkpoint was read
    res = entropy_elbo.collapse("run1", "x.npy")     # per-latent encoder entropies, three collapse metrics

A checkpoint that cannot be measured honestly raises `EntropyElboError` with the one-line message the command line
prints. The names below are imported on first use, so `import entropy_elbo` (and `entropy-elbo --help`) stays quick.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("entropy-elbo")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

_WHERE = {  # public name -> the module that holds it
    "estimate": "entropy_elbo.measure",
    "collapse": "entropy_elbo.measure",
    "inspect": "entropy_elbo.measure",
    "open_checkpoint": "entropy_elbo.opening",
    "Estimate": "entropy_elbo.elbo",
    "CollapseResult": "entropy_elbo.latents",
    "LoadOptions": "entropy_elbo.checkpoints",
    "Monitor": "entropy_elbo.monitor",
    "EntropyElboError": "entropy_elbo.errors",
}

__all__ = ["__version__", *_WHERE]


def __getattr__(name: str) -> object:
    if name in _WHERE:
        value = getattr(import_module(_WHERE[name]), name)
        globals()[name] = value  # once: later look-ups are plain attribute reads
        return value
    raise AttributeError(f"module 'entropy_elbo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
