"""Numbers as the tables print them: fixed point, never a non-zero value shown as zero."""

from __future__ import annotations


def fmt(value: float | None, digits: int = 4) -> str:
    """Fixed point, or scientific where fixed point would print a non-zero value as 0.0000."""
    if value is None:
        return "n/a"
    if value != 0 and abs(value) < 0.5 * 10.0 ** -digits:
        return f"{value:.{max(1, digits - 2)}e}"
    return f"{value:.{digits}f}"


def short(values: object) -> str:
    """A number to 6 significant digits, or a list's first 8 to 4 (with ", ..." when there are more)."""
    if isinstance(values, list):
        shown = ", ".join(f"{v:.4g}" for v in values[:8])
        return f"[{shown}{', ...' if len(values) > 8 else ''}]"
    return f"{values:.6g}" if isinstance(values, float) else str(values)


def variance_text(value: object) -> str:
    """A variance (a number or a list of them) as a table cell, n/a when there is none."""
    return "n/a" if value is None else short(value)
