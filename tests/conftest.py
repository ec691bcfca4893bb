"""Every test runs torch on one thread: the tensors are small, and on a shared 2-core machine a second thread only
waits for a core (about 10x slower)."""

import torch

torch.set_num_threads(1)
