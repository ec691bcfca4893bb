"""`--help`, `--version` and usage errors print without importing torch, numpy or rich; the choices they offer
are the names the library's registries hold (entropy_elbo.choices, moved there, not copied)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from entropy_elbo import choices

PROBE = """
import json, sys
from entropy_elbo.cli import main
try:
    main({args!r}, prog_name="entropy-elbo")
except SystemExit as stop:
    code = stop.code
print(json.dumps({{"code": code, "heavy": [m for m in ("torch", "numpy", "rich") if m in sys.modules]}}))
"""


@pytest.mark.parametrize("args,code", [
    (["--help"], 0), (["--version"], 0), (["train", "--help"], 0), (["estimate", "--help"], 0),
    (["collapse", "--help"], 0), (["select", "--help"], 0), (["estimate"], 2), (["train", "nosuchmodel"], 2),
    (["collapse", "x.safetensors", "--data", "x.npy", "--preprocess", "bad"], 2),
])
def test_cli_does_not_import_torch_for_help_or_usage_errors(args: list[str], code: int) -> None:
    run = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                         env={**os.environ}, timeout=60, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"code": code, "heavy": []}, run.stderr[-2000:]


def test_choices_are_the_registries_names() -> None:
    from entropy_elbo.checkpoints.mlp import OUTPUTS
    from entropy_elbo.data.bundled import BUNDLED
    from entropy_elbo.data.synthetic import SYNTHETIC
    from entropy_elbo.models import MODELS

    assert sorted(MODELS) == sorted(choices.MODEL_KINDS)
    assert sorted(SYNTHETIC) == sorted(choices.SYNTHETIC_SETS)
    assert list(BUNDLED) == list(choices.BUNDLED_SETS)
    assert ("linear", *OUTPUTS) == choices.OUTPUT_ACTIVATIONS


def test_train_help_lists_every_data_source() -> None:
    from click.testing import CliRunner

    from entropy_elbo.cli import main

    text = " ".join(CliRunner().invoke(main, ["train", "--help"], terminal_width=400).output.split())
    for source in (*choices.SYNTHETIC_SETS, *choices.BUNDLED_SETS, ".csv.gz", "idx", "image folder", ".npz"):
        assert source in text
