"""The vocabulary of config checks: ``need(ok, message)`` collects a problem when ``ok`` is false.

Every schema dataclass may define ``check(cls, node, cfg, need)`` (a classmethod: ``node`` is its own typed config
node, ``cfg`` the whole composed config, or None where only the node is known, as for ``vae-eval --set``). It checks
its own values, and what it needs of other groups; ``vae_cli.config.validate`` calls them all and holds only the
checks that no one schema owns. Every message names the key, the value it got and what to do instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig

Need = Callable[[bool, str], None]


def leaves(node: Any, kind: type, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of a config of type ``kind`` (bools are not ints here), with its dotted key."""
    if isinstance(node, DictConfig):
        for key, value in node.items():
            yield from leaves(value, kind, f"{prefix}{key}.")
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            yield from leaves(item, kind, f"{prefix[:-1]}[{i}].")
    elif isinstance(node, kind) and not isinstance(node, bool):
        yield prefix[:-1], node


def positive_list(values: Any) -> bool:
    return len(values) >= 1 and all(v >= 1 for v in values)


def run_checks(schema: type, node: Any, cfg: Any, need: Need) -> None:
    """``schema.check(node, cfg, need)`` for ``schema`` and every base class that defines its own check."""
    for klass in reversed(schema.__mro__):
        check = vars(klass).get("check")
        if check is not None:
            check.__get__(None, schema)(node, cfg, need)
