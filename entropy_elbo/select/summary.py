"""Summaries of a stream's BICs per segment (a known phase or a window of batches): each BIC's pick, its spread,
and whether the two ELBOs agree (a model near a stationary point, where eq. 20 holds)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from entropy_elbo.errors import EntropyElboError
from entropy_elbo.select.stream import StreamSelection

DEFAULT_TAIL = 1000  # batches at the end of a segment that its summary covers
DEFAULT_WINDOW = 1000  # batches per segment when the stream has no known phases
STATIONARY_TOLERANCE = 0.1  # nats per point: sampled and entropy ELBO further apart (+3 SE) flag a model in motion


@dataclass(frozen=True)
class Segment:
    """Rows [start, stop) of the stream, summarized together; true_dim when known (a synthetic phase)."""

    name: str
    start: int
    stop: int
    true_dim: int | None = None


def phase_segments(lengths: Sequence[int], true_dims: Sequence[int] | None = None) -> list[Segment]:
    """Consecutive phases of the given row counts, with their true intrinsic dimensions if known."""
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
    dims = list(true_dims) if true_dims is not None else [None] * len(lengths)
    return [Segment(f"phase {i + 1}", int(bounds[i]), int(bounds[i + 1]), dims[i]) for i in range(len(lengths))]


def window_segments(sel: StreamSelection, window: int) -> list[Segment]:
    """Consecutive windows of `window` batches (the last may be shorter), for a stream without known phases."""
    if window < 1:
        raise EntropyElboError(f"--window: got {window}; it must be >= 1 batch")
    t = len(sel.rows)
    stops = np.append(sel.start, sel.start[-1] + sel.rows[-1])
    return [Segment(f"window {i // window + 1}", int(stops[i]), int(stops[min(i + window, t)]))
            for i in range(0, t, window)]


@dataclass(frozen=True)
class MethodSummary:
    """One BIC's verdict over a segment's tail: mean and std per candidate, the pick, how often batches agree."""

    mean: np.ndarray  # (K,)
    std: np.ndarray  # (K,) over the tail's batches, ddof=1
    selected: int  # the H with the lowest mean BIC
    agreement: float  # share of the tail's batches whose own lowest BIC is `selected`


@dataclass(frozen=True)
class SegmentSummary:
    segment: Segment
    batches: int  # batches whose first row lies in the segment
    tail: int  # the last `tail` of them are summarized
    entropy: MethodSummary
    sampled: MethodSummary
    elbo_gap: np.ndarray  # (K,) mean sampled ELBO - mean entropy ELBO over the tail, nats per point
    elbo_gap_se: np.ndarray  # (K,) its standard error (over the tail's batches)

    @property
    def near_stationary(self) -> np.ndarray:
        """(K,) whether the two ELBOs agree within STATIONARY_TOLERANCE + 3 SE: eq. 20 holds at stationary points."""
        return np.abs(self.elbo_gap) <= STATIONARY_TOLERANCE + 3 * self.elbo_gap_se

    def to_dict(self, latents: Sequence[int]) -> dict[str, object]:
        def method(m: MethodSummary) -> dict[str, object]:
            return {"selected": m.selected, "agreement": m.agreement,
                    "mean": dict(zip(map(str, latents), m.mean.tolist(), strict=True)),
                    "std": dict(zip(map(str, latents), m.std.tolist(), strict=True))}

        s = self.segment
        ratio = self.sampled.std / np.maximum(self.entropy.std, np.finfo(float).tiny)
        return {"name": s.name, "start_row": s.start, "stop_row": s.stop, "true_dim": s.true_dim,
                "batches": self.batches, "tail_batches": self.tail, "entropy_bic": method(self.entropy),
                "sampled_bic": method(self.sampled),
                "std_ratio": dict(zip(map(str, latents), ratio.tolist(), strict=True)),
                "elbo_gap": dict(zip(map(str, latents), self.elbo_gap.tolist(), strict=True)),
                "near_stationary": dict(zip(map(str, latents), self.near_stationary.tolist(), strict=True))}


def _method_summary(bic: np.ndarray, latents: Sequence[int]) -> MethodSummary:
    """Mean and std over batches (T, K) of one BIC, its pick, and the share of batches picking the same."""
    mean = bic.mean(0)
    std = bic.std(0, ddof=1) if len(bic) > 1 else np.zeros(bic.shape[1])
    best = int(np.argmin(mean))
    return MethodSummary(mean, std, int(latents[best]), float(np.mean(bic.argmin(1) == best)))


def summarize(sel: StreamSelection, segments: Sequence[Segment], tail: int = DEFAULT_TAIL) -> list[SegmentSummary]:
    """Per segment, over its last min(tail, half its batches) batches: each BIC's mean, std and selected H.

    A batch belongs to the segment holding its first row; the tail skips the transient after a change.
    """
    if tail < 1:
        raise EntropyElboError(f"--tail: got {tail}; it must be >= 1 batch")
    total = int(sel.start[-1] + sel.rows[-1])
    if segments and segments[-1].stop != total:
        raise EntropyElboError(f"--phases: they cover {segments[-1].stop} rows but the stream has {total}; "
                               "make the phase lengths add up to the number of rows")
    ent, smp = sel.bic_entropy, sel.bic_sampled
    out = []
    for seg in segments:
        idx = np.flatnonzero((sel.start >= seg.start) & (sel.start < seg.stop))
        if len(idx) == 0:
            raise EntropyElboError(f"{seg.name} (rows {seg.start}-{seg.stop}) holds no batch; use longer phases")
        keep = idx[-max(1, min(tail, len(idx) // 2)):]
        gap = sel.elbo_sampled[keep] - sel.elbo_entropy[keep]  # (tail, K)
        se = gap.std(0, ddof=1) / np.sqrt(len(keep)) if len(keep) > 1 else np.full(gap.shape[1], np.inf)
        out.append(SegmentSummary(seg, len(idx), len(keep), _method_summary(ent[keep], sel.latents),
                                  _method_summary(smp[keep], sel.latents), gap.mean(0), se))
    return out


def phases_segments(phases: str | None, true_dims: str | None, total: int, source: str) -> list[Segment] | None:
    """The segments that `--phases` names: 'stream' (the paper's three equal phases of true dimension 6, 2, 4),
    comma-separated phase lengths adding up to the rows (with `--true-dims`, one per phase), or None (windows)."""
    from entropy_elbo.data import stream_phases
    from entropy_elbo.run_settings import parse_ints

    if phases == "stream":
        if total % 3:
            raise EntropyElboError(f"--phases stream: {source} has {total} rows, not three equal phases; "
                                   "give the phase lengths instead")
        return phase_segments(*zip(*[(p.stop - p.start, p.dim) for p in stream_phases(total // 3)], strict=True))
    if phases is None:
        return None
    dims = parse_ints(true_dims, "--true-dims") if true_dims else None
    lengths = parse_ints(phases, "--phases")
    if dims is not None and len(dims) != len(lengths):
        raise EntropyElboError(f"--true-dims: {len(dims)} values for {len(lengths)} phases; give one per phase")
    if sum(lengths) != total:
        raise EntropyElboError(f"--phases: they add up to {sum(lengths)} rows but {source} has {total}; "
                               "make them add up to the number of rows")
    return phase_segments(lengths, dims)


def check_latents(candidates: Sequence[int], x: np.ndarray, source: str) -> None:
    """Every candidate H must satisfy 1 <= H <= D."""
    d = int(np.prod(x.shape[1:]))
    if max(candidates) > d:
        raise EntropyElboError(f"--latents {max(candidates)}: {source} has D={d} values per row; "
                               f"pass candidates 1 <= H <= {d}")
