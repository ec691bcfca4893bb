"""Which rows of the data a measurement covers: the rows a run trained on, the rows it held out, or all of them.

`train --holdout F` splits its N rows with `data.split_indices(N, F, seed)`: a seeded permutation whose first
`heldout_rows` entries are held out. The checkpoint records the training rows' shape, `heldout_rows` and the seed
(its "data" and "training" metadata), which is enough to draw the same split again; `rows_of` does so, so that
`estimate` on the run's data measures by default the rows the model did not train on.
"""

from __future__ import annotations

import numpy as np

from entropy_elbo.choices import ROW_SETS
from entropy_elbo.errors import EntropyElboError


def recorded_split(metadata: dict[str, object]) -> tuple[int, int, int] | None:
    """(N rows split, rows held out, seed) from a checkpoint's metadata; None when the run held nothing out."""
    data, training = _as_dict(metadata.get("data")), _as_dict(metadata.get("training"))
    held, shape, seed = data.get("heldout_rows"), data.get("shape"), training.get("seed")
    if not isinstance(held, int) or held < 1 or not isinstance(shape, list) or not shape or not isinstance(seed, int):
        return None
    return int(shape[0]) + held, held, seed


def _as_dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}  # the loader parsed the metadata's JSON (errors.parse_json)


def rows_of(n: int, metadata: dict[str, object], rows: str | None, name: str) -> tuple[np.ndarray | None, str, str]:
    """The sorted row indices of `name`'s n rows to measure (None: all of them), which set they are, and a note.

    `rows`: "train", "holdout", "all", or None for the held-out rows when the run recorded a split that fits
    these rows, else all of them."""
    if rows is not None and rows not in ROW_SETS:
        raise EntropyElboError(f"rows: {rows!r} unknown; pass one of {', '.join(ROW_SETS)}")
    if rows == "all":
        return None, "all", ""
    split = recorded_split(metadata)
    if split is None:
        if rows is not None:
            raise EntropyElboError(f"--rows {rows}: the checkpoint records no train/held-out split (trained without "
                                   "--holdout, or not by entropy-elbo); pass --rows all")
        return None, "all", ""
    total, held, seed = split
    if n != total:
        why = (f"{name} has {n} rows but the run split {total} ({total - held} trained on, {held} held out)")
        if rows is not None:
            raise EntropyElboError(f"--rows {rows}: {why}; pass the run's data, or --rows all")
        return None, "all", f"note: measuring all {n} rows of {name}: {why}, so its split does not apply"
    perm = np.random.default_rng(seed).permutation(total)  # as data.split_indices draws it
    chosen = rows or "holdout"
    idx = np.sort(perm[:held] if chosen == "holdout" else perm[held:])
    what = "held out by training" if chosen == "holdout" else "the model trained on"
    default = ("" if rows is not None else
               "; --rows train or --rows all for the others")
    return idx, chosen, f"note: measuring the {len(idx)} of {n} rows of {name} {what} (seed {seed}){default}"
