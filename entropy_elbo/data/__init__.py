"""Data: array files and image folders streamed as float32 batches, and the paper's synthetic data sets.

`files` opens any of them (`open_array`, `resolve_data`) through one module per format (`npy`, `text`, `idx`,
`images`) and the `checks` they share; `batches` streams and splits the rows, `scaling` fits the scaler,
`saving` writes arrays atomically."""

from entropy_elbo.data.batches import iter_batches, split_indices
from entropy_elbo.data.files import open_array, resolve_data
from entropy_elbo.data.images import load_image_folder
from entropy_elbo.data.saving import save_array, save_chunks
from entropy_elbo.data.scaling import Scaler, fit_scaler
from entropy_elbo.data.synthetic import (
    SYNTHETIC,
    StreamPhase,
    make_synthetic,
    manifold,
    ppca,
    ppca_truth,
    ring,
    stream,
    stream_phases,
    stream_truth,
    synthetic_chunks,
)

__all__ = [
    "SYNTHETIC",
    "Scaler",
    "StreamPhase",
    "fit_scaler",
    "iter_batches",
    "load_image_folder",
    "make_synthetic",
    "manifold",
    "open_array",
    "ppca",
    "ppca_truth",
    "resolve_data",
    "ring",
    "save_array",
    "save_chunks",
    "split_indices",
    "stream",
    "stream_phases",
    "stream_truth",
    "synthetic_chunks",
]
