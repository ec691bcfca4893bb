"""Helpers of the hostile-input suite: crafted checkpoints, a hostile pickle, the CLI run and its checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner, Result
from hypothesis import strategies as st
from safetensors.torch import save_file

from entropy_elbo.checkpoints.native import read_metadata
from entropy_elbo.cli import main

D, H = 4, 2


class Marker:
    """Unpickling this creates `path`: the payload of every hostile pickle in the suite."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.path, "w"))


def resave(src: Path, dst: Path, change=None, meta_change=None) -> Path:  # noqa: ANN001
    """Copy a native checkpoint with its tensors and/or metadata altered (a crafted hostile file)."""
    from safetensors.torch import load_file

    state, meta = load_file(src), dict(read_metadata(src))
    if change:
        change(state)
    if meta_change:
        meta_change(meta)
    save_file(state, dst, metadata=meta)
    return dst


def config_with(src: Path, **fields: object):  # noqa: ANN201
    """A meta_change for `resave` that overwrites fields of the saved model config."""

    def change(meta: dict[str, str]) -> None:
        meta["config"] = json.dumps({**json.loads(meta["config"]), **fields})

    return change


def invoke(args: list[str]) -> Result:
    """Run the real CLI in-process (click's CliRunner), stdout and stderr apart."""
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_user_error(result: Result, code: int, *names: str) -> str:
    """Exit `code`, nothing on stdout, no traceback, and stderr's last line a one-line 'Error:' naming `names`."""
    err = result.stderr
    assert result.exit_code == code, (result.exit_code, err, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in err and "internal error" not in err, err
    assert result.stdout == "", result.stdout
    lines = err.strip().splitlines()
    if code == 1:
        assert len(lines) == 1, err
    line = lines[-1]
    assert line.startswith("Error: "), err
    for name in names:
        assert re.search(name, line), (name, line)
    return line


def byte_mutations(raw: bytes, max_random: int) -> st.SearchStrategy[tuple[bytes, str, set[int]]]:
    """(bytes, kind, flipped byte positions) of a valid file: random bytes (at most max_random), a strict
    prefix, or 1-4 bit flips."""
    rand = st.binary(max_size=max_random).map(lambda b: (b, "random", set()))
    cut = st.integers(0, len(raw) - 1).map(lambda n: (raw[:n], "truncated", set()))

    def flip(spots: list[tuple[int, int]]) -> tuple[bytes, str, set[int]]:
        out = bytearray(raw)
        for pos, bit in spots:
            out[pos] ^= 1 << bit
        return bytes(out), "flipped", {p for p, _ in spots}

    flips = st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 7)), min_size=1, max_size=4).map(flip)
    return st.one_of(rand, cut, flips)
