"""A large conv VAE: `collapse` and `estimate --samples 1 --decoder-variance optimal` on a diffusers AutoencoderKL at
Stable Diffusion's config (83.7 M weights, built from a config dict: no download) against diffusers' own loop
(`from_pretrained`, then encode, or encode + decode), on one image (issue #24, item 2).

Each figure runs in a fresh child process (its CPU time and peak resident memory, one torch thread), the
children interleaved: diffusers, tool, diffusers, tool, ... Targets: collapse within 1.2x of diffusers' encode in
CPU time and 1.3x in peak memory; estimate within 1.2x of encode + decode. Each ratio is printed with its target; the
script exits 1 when one is missed (judged on the min ratio: the least disturbed repeats of both sides).
Run: python benchmarks/large_conv.py [--quick] [--json] (128x128 and 256x256 in one run, three repeats; --quick:
128x128 alone, two repeats)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import emit, parse_args

SD_VAE = {"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
          "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32,
          "act_fn": "silu", "sample_size": 512, "scaling_factor": 0.18215,
          "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4}
CHILD = """
import resource, sys, time, numpy as np, torch
torch.set_num_threads(1)
mode, folder, data = sys.argv[1:4]
start = time.process_time()
if mode.startswith("diffusers"):
    from diffusers import AutoencoderKL
    vae = AutoencoderKL.from_pretrained(folder).eval()
    with torch.inference_mode():
        dist = vae.encode(torch.from_numpy(np.load(data))).latent_dist
        if mode == "diffusers_decode":
            vae.decode(dist.sample()).sample
else:
    import entropy_elbo
    if mode == "collapse":
        entropy_elbo.collapse(folder, data, device="cpu", threads=1)
    else:
        entropy_elbo.estimate(folder, data, samples=1, device="cpu", threads=1, decoder_variance="optimal")
seconds = time.process_time() - start
print({"cpu_s": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
"""


def child(mode: str, folder: Path, data: Path) -> dict[str, float]:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(folder), str(data)], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))


def compare(pairs: list[tuple[str, str]], folder: Path, data: Path, repeats: int) -> list[dict[str, object]]:
    runs: dict[str, list[dict[str, float]]] = {m: [] for pair in pairs for m in pair}
    for _ in range(repeats):
        for mode in runs:
            runs[mode].append(child(mode, folder, data))
    out = []
    for peer, tool in pairs:
        row: dict[str, object] = {"tool": tool, "peer": peer}
        for who, mode in (("peer", peer), ("tool", tool)):
            cpu = [r["cpu_s"] for r in runs[mode]]
            row |= {f"{who}_cpu_min_s": min(cpu), f"{who}_cpu_median_s": statistics.median(cpu),
                    f"{who}_peak_mib": min(r["peak_mib"] for r in runs[mode])}
        row |= {"cpu_ratio_min": row["tool_cpu_min_s"] / row["peer_cpu_min_s"],
                "cpu_ratio_median": row["tool_cpu_median_s"] / row["peer_cpu_median_s"],
                "memory_ratio": row["tool_peak_mib"] / row["peer_peak_mib"]}
        out.append(row)
    return out


TARGETS = {"collapse": {"cpu_ratio_min": 1.2, "memory_ratio": 1.3}, "estimate": {"cpu_ratio_min": 1.2}}


def missed(row: dict[str, object]) -> list[str]:
    """The targets this row misses, as words."""
    return [f"{row['tool']} {what} {row[what]:.2f} > {limit}" for what, limit in TARGETS[row["tool"]].items()
            if row[what] > limit]


def line(r: dict[str, object]) -> tuple[str, str]:
    targets = ", ".join(f"{k.split('_')[0]} <= {v}x" for k, v in TARGETS[r["tool"]].items())
    return (f"{r['tool']} vs {r['peer']} ({r['image_size']}x{r['image_size']})",
            f"CPU x{r['cpu_ratio_min']:.2f} min, x{r['cpu_ratio_median']:.2f} median ({r['tool_cpu_min_s']:.2f} vs "
            f"{r['peer_cpu_min_s']:.2f} s); peak memory x{r['memory_ratio']:.2f} ({r['tool_peak_mib']:.0f} vs "
            f"{r['peer_peak_mib']:.0f} MiB); target {targets}: {'MISSED' if missed(r) else 'met'}")


def main() -> None:
    args = parse_args(__doc__)
    import torch
    from diffusers import AutoencoderKL

    sizes = (128,) if args.quick else (128, 256)
    results = []
    with tempfile.TemporaryDirectory(prefix="large-conv-") as tmp:
        folder = Path(tmp) / "sd-vae"
        torch.manual_seed(0)
        AutoencoderKL.from_config({k: v for k, v in SD_VAE.items() if k != "_class_name"}).save_pretrained(folder)
        for size in sizes:
            data = Path(tmp) / f"image{size}.npy"
            np.save(data, np.random.default_rng(0).uniform(-1, 1, size=(1, 3, size, size)).astype(np.float32))
            pairs = [("diffusers_encode", "collapse"), ("diffusers_decode", "estimate")]
            results += [r | {"image_size": size} for r in compare(pairs, folder, data, 2 if args.quick else 3)]
    misses = [m for r in results for m in missed(r)]
    emit("large_conv", {"image_sizes": list(sizes), "results": results, "missed": misses},
         [line(r) for r in results], args.json)
    if misses:
        print(f"large_conv: target missed: {'; '.join(misses)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
