"""NaN and Inf in a safetensors file, found by reading its bytes once in chunks (issue #24, item 2).

safetensors maps the file and pages a tensor in when it is first read. Checking the loaded tensors for finiteness
reads every page, so a weight the measurement never uses (the decoder's, for `collapse`) would stay resident: for
Stable Diffusion's VAE 198 MB of 335. Plain reads into one reused buffer leave the process's resident memory
as it was; each element is tested by its exponent bits (all ones: NaN or Inf), one integer pass per chunk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from entropy_elbo.errors import parse_json

# dtype -> (little-endian word, exponent mask, mantissa mask): exponent all ones is Inf (mantissa 0) or NaN
BITS = {"F64": ("<u8", 0x7FF0000000000000, 0x000FFFFFFFFFFFFF), "F32": ("<u4", 0x7F800000, 0x007FFFFF),
        "F16": ("<u2", 0x7C00, 0x03FF), "BF16": ("<u2", 0x7F80, 0x007F)}
CHUNK = 1 << 24  # bytes per read


def nonfinite_tensor(path: Path) -> tuple[str, tuple[int, ...], str] | None:
    """The first floating tensor of the safetensors file at `path` holding NaN or Inf: (its key in the file, its
    shape, "NaN" or "Inf"), else None. The file was opened by safetensors already, so its header is well formed;
    a tensor whose bytes cannot all be read is left to the loaded tensors' own checks."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = parse_json(fh.read(size), str(path))
        buf = bytearray(CHUNK)
        for key, info in header.items():
            if key == "__metadata__" or info.get("dtype") not in BITS:
                continue
            word, exponent, mantissa = BITS[info["dtype"]]
            start, end = info["data_offsets"]
            fh.seek(8 + size + start)
            what = _scan(fh, buf, end - start, np.dtype(word), exponent, mantissa)
            if what is not None:
                return key, tuple(info["shape"]), what
    return None


def _scan(fh, buf: bytearray, left: int, word: np.dtype, exponent: int, mantissa: int) -> str | None:  # noqa: ANN001
    """'NaN' or 'Inf' when the next `left` bytes of `fh` hold one (NaN first), else None."""
    found = None
    while left > 0:
        got = fh.readinto(memoryview(buf)[: min(CHUNK, left)])
        if not got or got % word.itemsize:
            return None
        words = np.frombuffer(buf, dtype=word, count=got // word.itemsize)
        special = (words & word.type(exponent)) == word.type(exponent)
        if special.any():
            if (words[special] & word.type(mantissa)).any():
                return "NaN"
            found = "Inf"
        left -= got
    return found
