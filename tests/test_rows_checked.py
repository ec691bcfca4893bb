"""One check of in-memory rows for the front door and the Monitor: the same words for the same bad rows, each with
its own hint of what to pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entropy_elbo.errors import EntropyElboError
from entropy_elbo.monitor import as_rows
from entropy_elbo.opening import as_array, as_tensor

MONITOR_HINT = "pass a tensor or array of rows (B, ...) with B >= 1, the inputs alone (for an (x, y) batch pass x)"
FRONT_HINT = "pass rows (N, ...) with N >= 1 (one row: x[None])"


@pytest.mark.parametrize(("rows", "said"), [
    (np.zeros((0, 3), dtype=np.float32), "data: got shape (0, 3); "), (torch.zeros(5), "data: got shape (5,); "),
    (np.zeros(3, dtype=np.float64), "data: got shape (3,); "),
])
def test_bad_shapes_read_the_same_with_each_callers_hint(rows: object, said: str) -> None:
    for read, hint in ((as_rows, MONITOR_HINT), (as_array, FRONT_HINT)):
        with pytest.raises(EntropyElboError) as caught:
            read(rows)
        assert str(caught.value) == said + hint


def test_integer_tensors_are_refused_by_both_and_numpy_integers_read_by_the_monitor_as_before() -> None:
    for read in (as_rows, as_array, as_tensor):
        with pytest.raises(EntropyElboError, match=r"^data: dtype int64; pass floating-point rows$"):
            read(torch.zeros(4, 3, dtype=torch.int64))
    with pytest.raises(EntropyElboError, match=r"^data: dtype uint8; pass floating-point rows$"):
        as_array(np.zeros((4, 3), dtype=np.uint8))
    assert as_rows(np.ones((4, 3), dtype=np.uint8)).dtype == torch.float32  # unchanged: the Monitor converts numpy
    with pytest.raises(EntropyElboError, match=r"^data: got list; pass a tensor or array of rows"):
        as_rows([[1.0, 2.0]])
    got = as_array(torch.arange(6.0).reshape(2, 3))
    assert isinstance(got, np.ndarray) and got.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
