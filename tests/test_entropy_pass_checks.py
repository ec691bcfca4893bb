"""The entropy pass's cheap checks (issue #24 item 3) refuse what the full searches refuse, naming the same row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entropy_elbo.data.checks import check_finite, magnitude_limit
from entropy_elbo.elbo import accumulate
from entropy_elbo.errors import DataError, EntropyElboError


class Scripted(torch.nn.Module):
    """An encoder that returns nu = x[:, :2] and ln tau^2 = x[:, 2:4]: the data says what it outputs."""

    latent_dim = 2
    prior_log_var = None
    decoder_variance = "scalar"

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, :2].clone(), x[:, 2:4].clone()


@pytest.mark.parametrize(("column", "value"), [(0, np.nan), (1, -np.inf), (2, 89.0), (3, -89.0), (2, np.nan),
                                               (3, np.inf), (2, -np.inf)])
def test_every_bad_encoder_output_is_refused_with_its_row(column: int, value: float) -> None:
    x = np.zeros((30, 4), dtype=np.float32)
    x[17, column] = value
    with pytest.raises(EntropyElboError, match=rf"data row 17, latent {column % 2}: the encoder gives"):
        accumulate(Scripted(), [x[:10], x[10:]], samples=0)


def test_outputs_near_the_limits_pass_and_sum_as_before() -> None:
    x = np.zeros((30, 4), dtype=np.float32)
    x[5, 2], x[6, 3], x[7, 0] = 88.0, -88.0, 3e38
    acc = accumulate(Scripted(), [x[:10], x[10:]], samples=0)
    want = (torch.from_numpy(x[:, :2]).double() ** 2 + torch.from_numpy(x[:, 2:4]).double().exp()).sum(0)
    assert torch.allclose(acc["a"], want, rtol=1e-12)


def test_one_reduction_refuses_exactly_what_the_search_refuses() -> None:
    limit = magnitude_limit(3)
    rows = np.arange(4)
    above = np.nextafter(np.float32(limit), np.float32(np.inf))
    for bad in (np.nan, np.inf, -np.inf, above, -above):
        chunk = np.ones((4, 3), dtype=np.float32)
        chunk[2, 1] = bad
        with pytest.raises(DataError, match="row 2, column 1"):
            check_finite(chunk, rows, "x.npy")
    chunk = np.full((4, 3), np.nextafter(np.float32(limit), np.float32(0)), dtype=np.float32)  # squares overflow
    check_finite(chunk, rows, "x.npy")  # in the sum, but every value is within the limit: accepted
