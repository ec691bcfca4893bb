"""A memory-mapped data file truncated while it is read (issue 26, family 3): the read of a page past the new end
was a SIGBUS with no message. The mechanism is `data.shrink.size_guard`, checked before each chunk on both read
paths (in order, and by indices); each case truncates the file between two chunks in its own process, since a
missed check would kill that process."""

from __future__ import annotations

import sys

import pytest
from process_kit import run_process

SCRIPT = """
import os, sys
import numpy as np
from entropy_elbo.data import iter_batches, open_array
from entropy_elbo.errors import DataError
path = sys.argv[1]
np.save(path, np.ones((4096, 64), np.float32))  # 1 MiB of rows
x = open_array(path)
indices = np.arange(len(x))[::-1].copy() if sys.argv[2] == "indices" else None
try:
    for i, chunk in enumerate(iter_batches(x, 256, indices=indices)):
        if i == 0:
            os.truncate(path, 4096)  # another program cuts the file down to one page
    print("no error")
except DataError as err:
    print("DataError:", err)
"""


@pytest.mark.parametrize("order", ["in order", "indices"])
def test_a_file_truncated_between_chunks_is_one_line_naming_it(tmp_path, order: str) -> None:
    path = tmp_path / "x.npy"
    ran = run_process([sys.executable, "-c", SCRIPT, str(path), order.split()[0]], timeout=60)
    assert ran.returncode == 0, (ran.returncode, ran.stderr[-2000:])  # -7 would be the SIGBUS
    assert ran.stdout.startswith(f"DataError: {path}: the file shrank to 4096 bytes while it was being read"), \
        ran.stdout
    assert "let that finish and run again" in ran.stdout
