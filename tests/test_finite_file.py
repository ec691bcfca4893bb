"""NaN and Inf found in a safetensors file's bytes (finite_file), as torch finds them in the loaded tensors, for
every floating dtype safetensors stores; and reading them keeps the weights out of resident memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from entropy_elbo.checkpoints import finite_file
from entropy_elbo.checkpoints.load import load_model
from entropy_elbo.errors import CheckpointError


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("value", [None, float("nan"), float("inf"), -float("inf")])
def test_the_file_scan_agrees_with_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                         value: float | None) -> None:
    monkeypatch.setattr(finite_file, "CHUNK", 64)  # several chunks per tensor, the bad value in a later one
    big = torch.linspace(-3e4, 3e4, 1000).to(dtype)  # large finite values: exponents near, not at, all ones
    if value is not None:
        big[700] = value
    if value is not None and value > 0:
        big[900] = float("nan")  # Inf first, NaN later in the same tensor: NaN is said, as torch.isnan says
    state = {"a.weight": torch.ones(3, 4, dtype=dtype), "b.steps": torch.arange(5), "c.weight": big.reshape(50, 20)}
    path = tmp_path / "m.safetensors"
    save_file(state, path)
    got = finite_file.nonfinite_tensor(path)
    want = None if value is None else ("c.weight", (50, 20), "NaN" if torch.isnan(big).any() else "Inf")
    assert got == want
    assert (got is None) == bool(torch.isfinite(big).all())


def test_a_nan_weight_in_a_safetensors_file_is_refused_by_name(tmp_path: Path) -> None:
    state = {"encoder.0.weight": torch.randn(8, 4), "encoder.0.bias": torch.zeros(8), "fc_mu.weight": torch.randn(2, 8),
             "fc_mu.bias": torch.zeros(2), "fc_var.weight": torch.randn(2, 8), "fc_var.bias": torch.zeros(2)}
    state["fc_var.weight"][1, 3] = float("inf")
    path = tmp_path / "w.safetensors"
    save_file(state, path)
    said = r"tensor 'fc_var.weight' of shape \(2, 8\) holds Inf; the file is damaged"
    with pytest.raises(CheckpointError, match=said):
        load_model(path)
