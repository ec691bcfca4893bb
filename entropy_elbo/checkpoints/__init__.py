"""Checkpoints from every source as models meeting the `GaussianVAE` protocol; this module only hands names on.

`load_model` opens a file or folder (load.py); `sources.SOURCES` is the table of where checkpoints come from
(PyTorch and Lightning files, our own format, pythae, diffusers, PyTorch-VAE's layout, the user's class, a plain
MLP read from shapes), one module each; `adapt.adapt` runs the steps they share.
"""

from entropy_elbo.checkpoints.introspect import Assumption, Finding, Introspection
from entropy_elbo.checkpoints.load import LoadedModel, inspect_checkpoint, load_model, wrap_module
from entropy_elbo.checkpoints.native import load_checkpoint, save_checkpoint
from entropy_elbo.checkpoints.options import OPTIMAL, LoadOptions
from entropy_elbo.checkpoints.raw import check_finite

__all__ = ["OPTIMAL", "Assumption", "Finding", "Introspection", "LoadOptions", "LoadedModel", "check_finite",
           "inspect_checkpoint", "load_checkpoint", "load_model", "save_checkpoint", "wrap_module"]
