"""Nested structures read from files (JSON configs, Lightning's hyper_parameters, a pickle's dicts) walked with a
bound: at most MAX_DEPTH levels and MAX_NODES dicts visited, each container once however often it is
referenced. So a dict that holds itself, or one dict shared 60 levels deep (2^60 paths, 61 objects), is read in
milliseconds: the first is a cycle, refused; the second is 61 containers, walked once each.
"""

from __future__ import annotations

from collections.abc import Iterator

from entropy_elbo.errors import EntropyElboError

MAX_DEPTH = 65_536  # levels: the walk is a loop (no recursion limit), each level costs one iterator
MAX_NODES = 100_000  # dicts visited: a config has hundreds at most


def nested_items(obj: object, where: str, error: type[EntropyElboError] = EntropyElboError,
                 max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Iterator[tuple[str, object]]:
    """Every (key, value) of nested dicts, depth first; a dict met again is not walked again, a dict inside itself
    or nesting past `max_depth` or more than `max_nodes` dicts is one `error` line naming `where`."""
    if not isinstance(obj, dict):
        return
    seen, open_ids = {id(obj)}, [id(obj)]  # open_ids: the dicts on the current path (a cycle returns to one)
    stack = [iter(obj.items())]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            open_ids.pop()
            continue
        key, value = item
        yield str(key), value
        if not isinstance(value, dict):
            continue
        if id(value) in open_ids:
            raise error(f"{where}: key {str(key)[:40]!r} holds a dict that contains itself (a cycle); the file is "
                        "crafted or damaged, save a plain nested dict")
        if id(value) in seen:
            continue
        seen.add(id(value))
        if len(stack) >= max_depth or len(seen) > max_nodes:
            what = f"nests deeper than {max_depth} levels" if len(stack) >= max_depth else \
                f"holds more than {max_nodes} dicts"
            raise error(f"{where}: {what}, far beyond any real config; the file is crafted or damaged, re-save it "
                        "without that entry")
        stack.append(iter(value.items()))
        open_ids.append(id(value))
