"""The table of checkpoint sources, and `read_checkpoint`, which hands a path to its format's reader.

`SOURCES` is tried in order, as `torch.distributions.kl.register_kl` looks closed forms up by type: the first
source that recognises a raw checkpoint and builds a module for it wins (the plain MLP source, last, always
does). Each raw format belongs to exactly one source (`home`), which says what its training loss implies.
Adding a peer: one module with its reader and a `Source` subclass, one entry in `SOURCES` (and in
`read_checkpoint` if it has a file layout of its own).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from entropy_elbo.checkpoints.autoencoder_kl import (
    WEIGHTS,
    DiffusersSource,
    folder_config,
    is_autoencoder_kl,
    read_autoencoder_kl,
)
from entropy_elbo.checkpoints.mlp import MLPSource
from entropy_elbo.checkpoints.native import NativeSource, read_metadata
from entropy_elbo.checkpoints.pythae import PythaeSource, read_pythae
from entropy_elbo.checkpoints.raw import RawCheckpoint
from entropy_elbo.checkpoints.source import Built, Source
from entropy_elbo.checkpoints.torchfiles import TorchFileSource, read_safetensors, read_torch_file
from entropy_elbo.checkpoints.user import UserSource
from entropy_elbo.checkpoints.vanilla import VanillaSource

if TYPE_CHECKING:
    from entropy_elbo.checkpoints.options import LoadOptions

NATIVE = NativeSource()  # our own files, opened whole before any reader runs
SOURCES: tuple[Source, ...] = (NATIVE, UserSource(), TorchFileSource(), PythaeSource(), DiffusersSource(),
                               VanillaSource(), MLPSource())


def read_checkpoint(path: str | Path, *, trust_code: bool = False, model_given: bool = False,
                    key: str | None = None) -> RawCheckpoint:
    """Read `path` (a file or a model folder) into tensors and, where the format has one, a module.

    `model_given`: the user's --model class supplies the networks, so a pythae folder's pickles are not needed;
    `key` (--checkpoint-key): the dotted path of a state_dict nested in a torch.save dict.
    """
    path = Path(path)
    if path.is_dir() and (config := folder_config(path)) is not None:
        return read_autoencoder_kl(path / WEIGHTS, config)
    if path.is_dir():
        return read_pythae(path, trust_code, model_given)
    if read_metadata(path) is not None:
        raw = read_safetensors(path)
        if is_autoencoder_kl(raw.state):
            return read_autoencoder_kl(path, folder_config(path.parent), raw)
        return raw
    return read_torch_file(path, trust_code, key)


def home(raw: RawCheckpoint) -> Source:
    """The one source that reads `raw`'s format: what its training loss implies is that source's to say."""
    return next(s for s in SOURCES if raw.fmt in s.formats)


def pick(raw: RawCheckpoint, options: LoadOptions, source: str) -> tuple[Source, Built]:
    """The first source in the table that recognises `raw` and builds its module, with what it built."""
    for candidate in SOURCES:
        if candidate.recognise(raw, options) and (built := candidate.build(raw, options, source)) is not None:
            return candidate, built
    raise AssertionError("the plain MLP source builds for every raw checkpoint")  # unreachable: MLPSource is last
