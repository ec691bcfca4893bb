"""Numbers as the tables print them: fixed point, never a non-zero value shown as zero."""

from __future__ import annotations

from entropy_elbo.progress import fixed as fmt  # noqa: F401  (one way to print a figure, shared with training)


def short(values: object) -> str:
    """A number to 6 significant digits, or a list's first 8 to 4 (with ", ..." when there are more)."""
    if isinstance(values, list):
        shown = ", ".join(f"{v:.4g}" for v in values[:8])
        return f"[{shown}{', ...' if len(values) > 8 else ''}]"
    return f"{values:.6g}" if isinstance(values, float) else str(values)


def variance_text(value: object) -> str:
    """A variance (a number or a list of them) as a table cell, n/a when there is none."""
    return "n/a" if value is None else short(value)
