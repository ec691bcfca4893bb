"""Every test runs torch on one thread: the tensors are small, and on a shared 2-core machine a second thread only
waits for a core (about 10x slower)."""

import os

import torch
from hypothesis import settings

torch.set_num_threads(1)

# CI (CI=true) draws the same fuzz examples every run, so a submission's result does not depend on the draw; a
# local run keeps drawing new ones, which is where a new failure shows first.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
