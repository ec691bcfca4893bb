"""The one exception family for user errors: the CLI turns it into a one-line message and exit 1."""

from __future__ import annotations

import json
import re


class EntropyElboError(Exception):
    """A user error: bad file, bad key, bad shape or bad option. The message says what to do."""


class DataError(EntropyElboError):
    """A data file that cannot be read or holds values we cannot use."""


class CheckpointError(EntropyElboError):
    """A checkpoint that cannot be read, or whose model we cannot work out."""


class ModelError(EntropyElboError):
    """A model that does not meet the protocol, or a request it cannot answer."""


def first_line(err: BaseException) -> str:
    """An exception from code not ours (torch, a user's model, a trusted file) as one short line: its first line,
    or for TorchScript's interpreter (a preamble, then a script traceback) the line naming the error raised."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if "TorchScript interpreter" in lines[0]:
        raised = [line for line in lines if re.match(r"[\w.]+(Error|Exception): ", line)]
        lines = raised[-1:] or lines
    return lines[0][:200]


def parse_json(text: str | bytes, where: str) -> object:
    """JSON from a file or flag, any nesting depth refused in one line naming `where` (never a RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise EntropyElboError(f"{where}: JSON nested too deeply to read; write a flat JSON object") from None
    except (ValueError, TypeError) as err:
        raise EntropyElboError(f"{where}: not valid JSON ({first_line(err)})") from None
