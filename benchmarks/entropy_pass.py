"""The entropy ELBO pass (`--samples 0`) against the bare encoder over the same memory-mapped .npy, in one run
(issue #24, item 3).

The tool: `entropy_elbo.estimate(checkpoint, file.npy, samples=0)` as a Python caller runs it (opening the
checkpoint, reading the data in its batches, checking it, the float64 sums); the pass: the same without opening
(`elbo.estimate` on the model in memory and `iter_batches` of the file, the fixed cost left out). The floor:
np.load(mmap_mode="r"), the same batches handed to torch without a copy, `model.encode`, a float64 sum of ln tau^2.
CPU time of one torch thread, min and median of interleaved repeats. Target: within 1.1x of the bare encoder at
every N (both the tool and the pass; exit 1 if missed).
Run: python benchmarks/entropy_pass.py [--quick] [--json] [--rows 10000,100000,...]
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import emit, judge, manifold_vae1, parse_args, write_npy
from sampling_floor import side_by_side

import entropy_elbo
from entropy_elbo.batching import resolve_batch_size
from entropy_elbo.checkpoints.native import save_checkpoint
from entropy_elbo.data import iter_batches, manifold
from entropy_elbo.elbo import estimate

TARGET = 1.1


@torch.inference_mode()
def bare_encoder(model: torch.nn.Module, path: Path, rows: int) -> float:
    """Mean encoder entropy's core: sum of ln tau^2 over the file, the encoder alone."""
    x = np.load(path, mmap_mode="r")
    total = torch.zeros((), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for start in range(0, len(x), rows):
            total += model.encode(torch.as_tensor(x[start:start + rows]))[1].sum(dtype=torch.float64)
    return float(total)


def one_size(n: int, folder: Path, repeats: int) -> dict[str, object]:
    model = manifold_vae1()
    ckpt = save_checkpoint(model, folder / f"vae1-{n}.safetensors")
    data = folder / f"x-{n}.npy"
    part = manifold(n=min(n, 50_000), seed=0)
    write_npy(data, n, lambda start, stop: part[: stop - start], chunk=len(part))
    rows = resolve_batch_size(None, model, 100, 0, "cpu")
    t = side_by_side({"bare": lambda: bare_encoder(model, data, rows),
                      "pass": lambda: estimate(model, iter_batches(np.load(data, mmap_mode="r"), rows), samples=0),
                      "tool": lambda: entropy_elbo.estimate(ckpt, str(data), samples=0, device="cpu",
                                                            batch_size=rows, threads=1)}, repeats)
    data.unlink()
    return {"n": n, "batch_size": rows, **{f"{k}_{s}_s": v[s] for k, v in t.items() for s in ("min", "median")},
            "ratio_min": t["tool"]["min"] / t["bare"]["min"], "ratio_median": t["tool"]["median"] / t["bare"]["median"],
            "pass_ratio_min": t["pass"]["min"] / t["bare"]["min"],
            "pass_ratio_median": t["pass"]["median"] / t["bare"]["median"]}


def main() -> None:
    sizes = [10**4, 10**5] if "--quick" in sys.argv else [10**4, 10**5, 10**6, 10**7]
    if "--rows" in sys.argv:
        at = sys.argv.index("--rows")
        sizes = [int(v) for v in sys.argv.pop(at + 1).split(",")]
        sys.argv.pop(at)
    args = parse_args(__doc__)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="entropy-pass-") as tmp:
        results = [one_size(n, Path(tmp), 3 if args.quick else 5) for n in sizes]
    lines = [(f"N={r['n']:,} (batches of {r['batch_size']:,})",
              f"tool x{r['ratio_min']:.3f} min, x{r['ratio_median']:.3f} median; pass x{r['pass_ratio_min']:.3f} min, "
              f"x{r['pass_ratio_median']:.3f} median (tool {r['tool_min_s']:.3f} s, pass {r['pass_min_s']:.3f} s, "
              f"bare encoder {r['bare_min_s']:.3f} s CPU)") for r in results]
    emit("entropy_pass", {"target": TARGET, "results": results}, lines, args.json)
    judge({f"{what} N={r['n']:,}": (r[key], TARGET) for r in results
           for what, key in (("tool", "ratio_min"), ("pass", "pass_ratio_min"))})


if __name__ == "__main__":
    main()
