"""The model's own code runs under one guard (issue 26, family 2): a `--model` class or a live module whose
constructor or methods call sys.exit (0 included), raise KeyboardInterrupt or any exception ends in one line
naming the class and the method, exit 1, never a silent exit 0. Each case is its own process, time-bounded."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from process_kit import assert_one_line, cli

from entropy_elbo.checkpoints.guard import model_code
from entropy_elbo.errors import ModelError

MODEL = '''
import sys
import torch
from torch import nn


class Hostile(nn.Module):
    """A linear Gaussian VAE whose `fail_in` method does `how`."""

    def __init__(self, fail_in="", how="exit0"):
        super().__init__()
        self.enc = nn.Linear(4, 4)
        self.dec = nn.Linear(2, 4)
        self.fail_in, self.how = fail_in, how
        self.fail("__init__")

    def fail(self, where):
        if where != self.fail_in:
            return
        if self.how == "exit0":
            sys.exit(0)
        if self.how == "exit3":
            sys.exit(3)
        if self.how == "ctrl-c":
            raise KeyboardInterrupt
        raise ValueError("the model gave up")

    def encode(self, x):
        self.fail("encode")
        h = self.enc(x)
        return h[:, :2], h[:, 2:]

    def decode(self, z):
        self.fail("decode")
        return self.dec(z), torch.zeros(1)
'''


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("guarded")
    (d / "hostile.py").write_text(MODEL)
    sys.path.insert(0, str(d))
    try:
        from hostile import Hostile  # noqa: PLC0415 -- the file just written
    finally:
        sys.path.remove(str(d))
    torch.save(Hostile().state_dict(), d / "w.pt")
    np.save(d / "x.npy", np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32))
    return d


@pytest.mark.parametrize(("method", "how", "said"), [
    ("__init__", "exit0", "called sys.exit(0)"),
    ("encode", "exit0", "called sys.exit(0)"),
    ("decode", "exit3", "called sys.exit(3)"),
    ("encode", "ctrl-c", "raised KeyboardInterrupt"),
    ("decode", "raise", "ValueError: the model gave up"),
])
def test_model_code_that_exits_or_raises_is_one_line_and_exit_1(hostile_model: Path, method: str, how: str,
                                                                 said: str) -> None:
    d = hostile_model
    ran = cli("estimate", d / "w.pt", "--data", d / "x.npy", "--model", f"{d / 'hostile.py'}:Hostile",
              "--model-kwargs", f'{{"fail_in": "{method}", "how": "{how}"}}', "--samples", "2", timeout=60)
    assert_one_line(ran, f"Hostile.{method}() failed", said)


def test_the_guard_turns_every_escape_into_a_model_error_naming_class_and_method() -> None:
    for escape in (SystemExit(0), KeyboardInterrupt(), RuntimeError("boom"), GeneratorExit()):
        with pytest.raises(ModelError, match=r"^the model's own Net\.encode\(\) failed"), model_code("Net", "encode"):
            raise escape
