"""The paper's user-supplied data sets at a realistic size: MNIST (Fig. 1b), SUSY and CelebA, end to end.

Writes files of the real formats with synthetic content to a temporary folder, then runs, each as its own process
with one torch thread, `entropy-elbo train --preset P --data FILE --epochs E` (E small: a smoke run of the loader,
the trainer and the writer at the real size, not the paper's epochs) and `entropy-elbo estimate RUN --data FILE`,
and prints wall seconds, CPU seconds and peak resident memory of each process (os.wait4's rusage of that child).

- MNIST: `train-images-idx3-ubyte.gz` (60,000 x 28 x 28 ubyte, idx3, gzipped as LeCun ships it) and its idx1 labels;
- SUSY: `SUSY.csv.gz`, 500,000 rows of 19 columns ("%.18e", no header, the label in column 0, as UCI's file);
- CelebA: `img_align_celeba/000001.jpg` ... 2,000 JPEGs of 178 x 218 pixels (the aligned set's size).

    python benchmarks/real_scale.py [--epochs 1] [--samples 10] [--only mnist susy celeba] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- the files


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file of unsigned bytes (type code 0x08), gzipped when the name ends in .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def mnist_like(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 images of one to three blurred strokes each, and labels 0-9."""
    grid = np.arange(28, dtype=np.float32)
    images = np.zeros((n, 28, 28), np.float32)
    for _ in range(3):
        a, b = rng.uniform(6, 22, (2, n, 1, 1)).astype(np.float32)
        angle = rng.uniform(0, np.pi, (n, 1, 1)).astype(np.float32)
        dist = np.abs((grid[None, :, None] - a) * np.cos(angle) - (grid[None, None, :] - b) * np.sin(angle))
        images = np.maximum(images, np.exp(-dist**2) * (rng.random((n, 1, 1)) < 0.8))
    return (images * 255).astype(np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_mnist(folder: Path, n: int, rng: np.random.Generator) -> Path:
    parts = [mnist_like(min(10_000, n - start), rng) for start in range(0, n, 10_000)]
    images, labels = (np.concatenate(p) for p in zip(*parts, strict=True))
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    return folder / "train-images-idx3-ubyte.gz"


def write_susy(folder: Path, n: int, rng: np.random.Generator, chunk: int = 50_000) -> Path:
    """UCI's SUSY.csv.gz layout: no header, column 0 the 0/1 label, 18 kinematic features, '%.18e'."""
    path = folder / "SUSY.csv.gz"
    mix = rng.normal(size=(6, 18))
    with gzip.open(path, "wt", compresslevel=6) as f:
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            label = (rng.random(m) < 0.46).astype(np.float64)
            feats = np.abs(rng.normal(size=(m, 6)) @ mix + label[:, None]) + rng.gamma(2.0, 0.3, (m, 18))
            np.savetxt(f, np.column_stack([label, feats]), fmt="%.18e", delimiter=",")
    return path


def write_celeba(folder: Path, n: int, rng: np.random.Generator) -> Path:
    """n 178 x 218 JPEGs (quality 95), a shaded ellipse on a graded background, named as CelebA's aligned set."""
    from PIL import Image

    out = folder / "img_align_celeba"
    out.mkdir()
    y, x = np.mgrid[0:218, 0:178].astype(np.float32)
    for i in range(n):
        bg, face = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        cy, cx, ry, rx = 109 + rng.normal(0, 6), 89 + rng.normal(0, 6), rng.uniform(45, 65), rng.uniform(35, 50)
        inside = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1
        img = bg * (0.6 + 0.4 * y[..., None] / 218)
        img = np.where(inside[..., None], face * (0.7 + 0.3 * x[..., None] / 178), img)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(out / f"{i + 1:06d}.jpg", quality=95)
    return out


# ---------------------------------------------------------------------------------------------- the runs


def run(args: list[str], log: Path) -> dict[str, float]:
    """One `python -m entropy_elbo ...` process (one torch thread): wall s, CPU s (user + sys), peak RSS MiB."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "entropy_elbo", *args, "--threads", "1"], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): entropy-elbo {' '.join(args)}\n{log.read_text()[-2000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024}


def one_set(name: str, data: Path, folder: Path, epochs: int, samples: int) -> list[dict[str, object]]:
    """train --preset name, then estimate the run: a row per step, the estimate's figures on the second."""
    out = folder / f"run_{name}"
    preset = {"mnist": "fig1b"}.get(name, name)
    train = run(["train", "--preset", preset, "--data", str(data), "--epochs", str(epochs), "--out", str(out)],
                folder / f"{name}_train.log")
    est_log = folder / f"{name}_estimate.log"
    est = run(["estimate", str(out), "--data", str(data), "--samples", str(samples), "--json"], est_log)
    text = est_log.read_text()
    result = json.loads(text[text.index("{"):])
    est["figures"] = (f"n {result['n']}, entropy ELBO {result['entropy_elbo']:.4f}, MC ELBO {result['mc_elbo']:.4f}"
                      f" +- {result['mc_stderr']:.4f}, r {result['stationarity']['r']:.4f}")
    return [{"set": name, "step": f"train --preset {preset} --epochs {epochs}", **train},
            {"set": name, "step": f"estimate --samples {samples}", **est}]


SETS = {"mnist": (write_mnist, 60_000), "susy": (write_susy, 500_000), "celeba": (write_celeba, 2_000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=1, help="Training epochs per set (the paper: 150-500).")
    parser.add_argument("--samples", type=int, default=10, help="Monte Carlo samples per point in estimate.")
    parser.add_argument("--only", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--keep", type=Path, default=None, help="Write the files and runs here and keep them.")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="real_scale_"))
    folder.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import cpu_name

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    rows = []
    for name in args.only:
        writer, n = SETS[name]
        start = time.perf_counter()
        data = writer(folder, n, np.random.default_rng(0))
        size = sum(p.stat().st_size for p in ([data] if data.is_file() else data.iterdir()))
        print(f"{name}: wrote {data.name} ({n:,} rows, {size / 2**20:.1f} MiB) in {time.perf_counter() - start:.0f} s",
              flush=True)
        for row in one_set(name, data, folder, args.epochs, args.samples):
            rows.append(row)
            print(f"  {row['step']:<38} wall {row['wall_s']:7.1f} s  CPU {row['cpu_s']:7.1f} s  "
                  f"peak {row['peak_mib']:7.0f} MiB  {row.get('figures', '')}", flush=True)
    print(f"load after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; files and logs in {folder}")


if __name__ == "__main__":
    main()
