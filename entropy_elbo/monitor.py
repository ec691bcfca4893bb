"""Watch a VAE train in the user's own loop: entropy ELBO, stationarity and collapse on a fixed batch, per epoch.

`Monitor(model, data=batch)` finds out the model as the checkpoint loaders do (our models as they are; any
other module through `ModuleAdapter`, with the same overrides), and `step(epoch)` returns one row in the
schema of our run logs (`entropy-elbo plot monitor.jsonl` draws it). The figures come from the estimators
`estimate.accumulate`/`summarize` and `collapse`'s streaming statistics: one encoder pass for the entropy
figures and the three collapse metrics, and with `samples` >= 1 one decoder pass of S samples per row for the
Monte Carlo ELBO and r. Every figure is in nats per data point (per latent for the per-latent ones).

The evaluation leaves the model's training state alone: it runs in eval mode under `inference_mode` (batch
norm keeps its running statistics, dropout is off), restores every sub-module's train/eval flag, draws its
samples from its own seeded generator (the same noise at every step) and restores torch's global RNG state.
Under torch.distributed each rank takes its block of the batch and the float64 sums are added over ranks.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from entropy_elbo.checkpoints import LoadOptions
from entropy_elbo.distributed import Context, all_or_none, all_reduce_sums, merge_over_ranks, shard_rows
from entropy_elbo.elbo import (
    FIXED_NOTE,
    UNITS,
    Estimate,
    accumulate,
    summarize,
)
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.latents import (
    ACTIVE_THRESHOLD,
    LUCAS_DELTA,
    LUCAS_EPSILON,
    METRICS,
    CollapseResult,
    check_settings,
    stream_sums,
    summarize_collapse,
)
from entropy_elbo.opening import check_rows, open_module, variance_known
from entropy_elbo.pass_checks import check_finite_estimate
from entropy_elbo.runs import append_log
from entropy_elbo.stationarity import at_optimal_variance

R_TOLERANCE = 0.2  # warn when |r - 1| exceeds it ...
R_PATIENCE = 5  # ... at this many steps in a row (early in training r is far from 1 anyway)


class MonitorWarning(UserWarning):
    """Something the monitor saw during training: a collapsing latent, sigma^2 far from its optimum, a fixed sigma^2."""


@contextmanager
def untouched(module: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode and inference mode for the block; afterwards every train/eval flag and torch's RNG state as before."""
    flags = [(m, m.training) for m in module.modules()]
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            module.eval()
            yield
    finally:
        for m, training in flags:
            m.training = training


@contextmanager
def rank0_buffers(module: nn.Module, world: int) -> Iterator[None]:
    """Under DDP, rank 0's buffers (batch norm statistics) for the block, so that every rank measures the model
    rank 0 holds (DDP syncs buffers only at the next forward); afterwards each rank's own buffers as before."""
    buffers = list(module.buffers()) if world > 1 else []
    saved = [b.clone() for b in buffers]
    try:
        with torch.no_grad():
            for b in buffers:
                dist.broadcast(b, src=0)
        yield
    finally:
        with torch.no_grad():
            for b, s in zip(buffers, saved, strict=True):
                b.copy_(s)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside DistributedDataParallel / DataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def module_device(module: nn.Module) -> torch.device:
    """Where the module's first parameter (or buffer) lives; CPU for a module with neither."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


def rank_block(rows: Tensor, distributed: bool | None) -> tuple[int, int, Tensor]:
    """This process's rank, the number of ranks, and its contiguous block of the batch (all of it in one process);
    `distributed` None means: whenever a torch.distributed group of several processes is up."""
    if distributed is None:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if not distributed:
        return 0, 1, rows
    rank, world = dist.get_rank(), dist.get_world_size()
    if rows.shape[0] < world:
        raise EntropyElboError(f"data: {rows.shape[0]} rows for {world} processes; pass at least one row per process")
    block = shard_rows(rows.shape[0], rank, world)
    return rank, world, rows[int(block[0]) : int(block[-1]) + 1]


def as_rows(data: object) -> Tensor:
    """The monitor's fixed batch as a float32 tensor (B, ...), or a one-line error naming what to pass."""
    if isinstance(data, np.ndarray):  # a numpy array of any real dtype is read as float32 (a tensor must be float)
        data = torch.from_numpy(np.require(data, dtype=np.float32, requirements=["C", "W"]))
    check_rows(data, "a tensor or array of rows (B, ...) with B >= 1, the inputs alone (for an (x, y) batch pass x)")
    return data.detach().to(torch.float32)


class Monitor:
    """The paper's figures of a live model on a fixed batch, one row per `step` (nats per data point)."""

    def __init__(self, model: nn.Module, data: object, *, samples: int = 1, seed: int = 0,
                 log: str | Path | None = None, threshold: float | None = None, delta: float | None = None,
                 active_threshold: float = ACTIVE_THRESHOLD, lucas_epsilon: float = LUCAS_EPSILON,
                 lucas_delta: float = LUCAS_DELTA, r_tolerance: float = R_TOLERANCE, r_patience: int = R_PATIENCE,
                 options: LoadOptions | None = None, distributed: bool | None = None) -> None:
        if samples < 0:
            raise EntropyElboError(f"samples: got {samples}; pass 0 (entropy figures only) or a positive count")
        check_settings(threshold, delta, active_threshold, lucas_epsilon, lucas_delta)
        model = unwrap(model)
        self.module, self.samples, self.seed = model, samples, seed
        self.optimal_variance = options is not None and options.optimal_variance  # sigma^2 = sigma^2 r at each step
        if self.optimal_variance and samples < 1:
            raise EntropyElboError("samples: 0 with decoder_variance='optimal'; sigma*^2 = sigma^2 r needs "
                                   "samples >= 1")
        self.collapse_settings = {"threshold": threshold, "delta": delta, "active_threshold": active_threshold,
                                  "lucas_delta": lucas_delta}
        self.lucas_epsilon, self.r_tolerance, self.r_patience = lucas_epsilon, r_tolerance, r_patience
        self.log = None if log is None else Path(log)
        if self.log is not None and not self.log.parent.is_dir():
            raise EntropyElboError(f"log {self.log}: folder {self.log.parent} does not exist; create it first")
        rows = as_rows(data)
        self.d = int(np.prod(rows.shape[1:]))
        self.rank, self.world, self._rows = rank_block(rows, distributed)
        device = module_device(model)
        with untouched(model, device):
            opened = open_module(model, self._rows.to(device), options=options)
        self.vae, self.introspection = opened.model, opened.introspection
        self.rows: list[dict[str, object]] = []
        self._warned: set[str] = set()  # "fixed", "r", "collapse:k"
        self._ever_active: set[int] = set()
        self._r_out = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 (or the only process) writes the log and warns."""
        return self.rank == 0

    @property
    def mc_samples(self) -> int:
        """S, or 0 for a fixed decoder variance whose value nobody gave (the MC ELBO would be at a made-up sigma^2)."""
        intro = self.introspection
        return self.samples if intro is None or variance_known(intro) else 0

    def measure(self) -> tuple[Estimate, CollapseResult]:
        """The estimate and the collapse metrics of the model as it is now, over the whole batch (all ranks)."""
        device = module_device(self.module)
        if self._rows.device != device:  # moved once (the model may have moved since the monitor was made)
            self._rows = self._rows.to(device)
        x = self._rows
        samples = self.mc_samples
        kept: list[tuple[Tensor, Tensor]] = []
        prior = self.vae.prior_log_var
        with rank0_buffers(self.module, self.world), untouched(self.module, device):
            gen = torch.Generator(device=device).manual_seed(self.seed + self.rank)
            acc = self._all_or_none(device, lambda: accumulate(self.vae, [x], samples=samples, generator=gen,
                                                               device=device, encodings=kept))
            prior = None if prior is None else prior.detach()
            sums = stream_sums(kept, prior_log_var=prior, epsilon=self.lucas_epsilon)
            if self.world > 1:
                acc = all_reduce_sums(acc)
                sums = merge_over_ranks(sums, self._context(), device, self.lucas_epsilon)
            est = check_finite_estimate(summarize(self.vae, acc, samples=samples, d=self.d))
            if self.optimal_variance:
                est = at_optimal_variance(est)
            result = summarize_collapse(sums, prior_log_var=prior, **self.collapse_settings)
        return est, result

    def state_dict(self) -> dict[str, object]:
        """What the warnings remember (so that a resumed run does not warn twice), JSON-friendly."""
        return {"warned": sorted(self._warned), "ever_active": sorted(self._ever_active), "r_out": self._r_out}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Carry on from `state_dict()` of an earlier run."""
        self._warned = set(state.get("warned", ()))
        self._ever_active = set(state.get("ever_active", ()))
        self._r_out = int(state.get("r_out", 0))

    def step(self, epoch: int | None = None) -> dict[str, object]:
        """Measure now; returns (and logs) the row: entropy ELBO and its three entropies, MC ELBO, r, a_h,
        per-latent entropies, active latents by the three metrics, and the warnings first raised at this step."""
        start = time.perf_counter()
        epoch = len(self.rows) + 1 if epoch is None else int(epoch)
        est, result = self.measure()
        row = monitor_row(epoch, est, result)
        row["warnings"] = self._warnings(epoch, est, result)
        row.update(seconds=time.perf_counter() - start, wall_time=time.time())
        self.rows.append(row)
        if self.log is not None and self.is_main:
            append_log(self.log, row)
        return row

    # ------------------------------------------------------------------------------------------ internals

    def _context(self) -> Context:
        return Context(self.rank, self.world, self.rank)

    def _all_or_none(self, device: torch.device, fn):  # noqa: ANN001, ANN202
        return fn() if self.world == 1 else all_or_none(self._context(), device, fn)

    def _warnings(self, epoch: int, est: Estimate, result: CollapseResult) -> list[str]:
        """Each kind of trouble once (once per latent for collapse), as a MonitorWarning on the main rank."""
        new: list[tuple[object, str]] = []
        if est.decoder_variance == "fixed":
            given = "" if self.mc_samples else "; pass options=LoadOptions(decoder_variance=VALUE) for the MC ELBO"
            new.append(("fixed", f"{FIXED_NOTE}{given}"))
        for k, collapsed in enumerate(result.collapsed["entropy"]):
            if not collapsed:
                self._ever_active.add(k)
            elif k in self._ever_active:
                new.append((f"collapse:{k}", f"epoch {epoch}: latent {k} collapsed: its mean encoder entropy "
                            f"{result.mean_entropy[k]:.4f} nats exceeds {result.entropy_threshold[k]:.4f} (eq. 24), "
                            "after being active at an earlier step"))
        r = est.stationarity.get("r")
        if r is not None and est.decoder_variance in ("scalar", "per-dim"):
            self._r_out = self._r_out + 1 if abs(r - 1) > self.r_tolerance else 0
            if self._r_out >= self.r_patience:
                s2 = np.mean(est.stationarity["sigma2"])
                new.append(("r", f"epoch {epoch}: r = {r:.4f} (|r - 1| > {self.r_tolerance} at {self._r_out} steps in "
                            f"a row): sigma^2 = {s2:.4g} is far from its optimum sigma^2 * r = {s2 * r:.4g} given the "
                            f"rest, so the entropy ELBO is off by (D/2)(1 - r) = {self.d * (1 - r) / 2:.4g} nats per "
                            "data point (eq. 76); check that sigma^2 is learned, or give it a larger learning rate"))
        fresh = [(key, text) for key, text in new if key not in self._warned]
        for key, text in fresh:
            self._warned.add(key)
            if self.is_main:
                warnings.warn(text, MonitorWarning, stacklevel=user_stacklevel())
        return [text for _, text in fresh]


def monitor_row(epoch: int, est: Estimate, result: CollapseResult) -> dict[str, object]:
    """One row in the schema of `train`'s run log (`elbo` is the MC ELBO on the monitor's batch), plus r, a_h and
    the three collapse metrics; nats per data point."""
    active = {m: result.h - c for m, c in result.counts.items()}
    st = est.stationarity
    return {
        "epoch": epoch, "mc_elbo": est.mc_elbo, "mc_stderr": est.mc_stderr, "mc_samples": est.mc_samples,
        "entropy_elbo": est.entropy_elbo, "relative_gap": est.relative_difference,
        "encoder_entropy": est.entropies["encoder"], "prior_entropy": est.entropies["prior"],
        "decoder_entropy": est.entropies["decoder"], "latent_entropies": result.mean_entropy,
        "active_latents": active["entropy"], "active_latents_by_metric": {m: active[m] for m in METRICS},
        "r": st.get("r"), "a": st["a"], "gap": st.get("gap"), "sigma2": st.get("sigma2"),
        "sigma2_optimal": st.get("sigma2_optimal"), "n": est.n, "decoder_variance": est.decoder_variance,
        "units": UNITS, "note": est.note,
    }


def finite(value: object) -> bool:
    """A number worth logging to a metrics logger (not None, not NaN)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def user_stacklevel() -> int:
    """The `stacklevel` that makes a warning raised in the calling function name the user's line: the first frame
    outside entropy-elbo, Lightning and torch (the user's loop calling Monitor.step, or their trainer.fit)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and _ours(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


def _ours(filename: str) -> bool:
    """Whether a frame's file belongs to entropy-elbo, torch or a Lightning package (by its package folder)."""
    folders = [str(Path(__file__).parent)]
    for name in ("torch", "lightning", "pytorch_lightning", "lightning_fabric"):
        module = sys.modules.get(name)
        if getattr(module, "__file__", None):
            folders.append(str(Path(module.__file__).parent))
    return any(filename.startswith(folder + os.sep) for folder in folders)
