"""The model's own code (a --model class, TorchScript, a trusted pickle, a live module) runs under one guard.

Whatever it raises becomes one `ModelError` line naming the class and the method: any exception, and also
`SystemExit` (a `sys.exit(0)` inside `encode()` must not read as success) and a `KeyboardInterrupt` raised inside
it. Our own errors pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from entropy_elbo.errors import EntropyElboError, ModelError, first_line


def what_happened(err: BaseException) -> str:
    """A foreign exception as words: sys.exit and Ctrl-C said as such, anything else as `Class: first line`."""
    if isinstance(err, SystemExit):
        return f"it called sys.exit({err.code!r}): model code must return its outputs, not exit"
    if isinstance(err, KeyboardInterrupt):
        return "it raised KeyboardInterrupt"
    return f"{type(err).__name__}: {first_line(err)}"


def owner_name(fn: object) -> str:
    """The class a bound method, a TorchScript method or a module called as a function belongs to."""
    for attribute in ("__self__", "owner"):  # a bound method; a TorchScript method (never truth-tested: no __len__)
        owner = getattr(fn, attribute, None)
        if owner is not None:
            break
    else:
        owner = fn
    name = getattr(owner, "original_name", None)  # a TorchScript module's Python class name
    return name if isinstance(name, str) else type(owner).__name__


@contextmanager
def model_code(owner: str, method: str, hint: str = "", error: type[EntropyElboError] = ModelError,
               where: str = "") -> Iterator[None]:
    """Run the body as the model's own code `owner.method()`: any failure becomes one `error` line naming both."""
    try:
        yield
    except EntropyElboError:
        raise
    except BaseException as err:  # noqa: BLE001 -- the model's own code: SystemExit and Ctrl-C included
        raise error(f"the model's own {owner}.{method}() failed{where} ({what_happened(err)}){hint}") from None

