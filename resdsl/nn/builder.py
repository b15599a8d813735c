"""The state of one model build: the graph being built, the scope stack, the seed, and naming."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..errors import ResdslError, caller_loc
from ..ir import Graph

_current: list[Builder] = []


class Builder:
    """The graph, the scope stack and the seed of the model being built."""

    def __init__(self, name: str, seed: int = 0) -> None:
        self.graph = Graph(name)
        self.seed = seed
        self.scopes: list[str] = []
        self.auto: dict[str, int] = {}

    def qualify(self, name: str) -> str:
        return ".".join(self.scopes + [name])

    def auto_name(self, op: str) -> str:
        base = self.qualify(op)
        k = self.auto.get(base, 0)
        self.auto[base] = k + 1
        return base if k == 0 else f"{base}_{k}"


def current() -> Builder:
    if not _current:
        raise ResdslError(
            "DSL call outside a model", caller_loc(), "call nn.* inside a function decorated with @resdsl.model"
        )
    return _current[-1]


@contextlib.contextmanager
def building(name: str, seed: int = 0) -> Iterator[Builder]:
    b = Builder(name, seed)
    _current.append(b)
    try:
        yield b
    finally:
        _current.pop()


@contextlib.contextmanager
def scope(name: str | int) -> Iterator[None]:
    """Nest layer and parameter names: ``layer1.0.conv1.weight``."""
    valid = (isinstance(name, int) and not isinstance(name, bool) and name >= 0) or (
        isinstance(name, str) and name != "" and all(part for part in name.split("."))
    )
    if not valid:
        raise ResdslError(
            f"nn.scope: {name!r} is not a scope name", caller_loc(), "name a scope with a non-empty string or an int"
        )
    b = current()
    b.scopes.append(str(name))
    try:
        yield
    finally:
        b.scopes.pop()
