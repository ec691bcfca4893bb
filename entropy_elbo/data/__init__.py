"""Data: array files and image folders streamed as float32 batches, and the paper's synthetic data sets."""

from entropy_elbo.data.files import (
    Scaler,
    fit_scaler,
    iter_batches,
    load_image_folder,
    open_array,
    resolve_data,
    save_array,
    save_chunks,
    split_indices,
)
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
