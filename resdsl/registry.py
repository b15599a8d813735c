"""The op registry: each op defined once, with its attributes, shape rule and reference.

Backends keep their own lowering tables keyed by the names registered here,
and a test checks that every registered op has a lowering in every backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .shapes import Shape

REQUIRED = object()


class ShapeError(Exception):
    """Raised by a shape rule; the caller attaches the user's source location."""


@dataclass(frozen=True)
class OpDef:
    name: str
    doc: str
    attrs: dict[str, Any]  # attribute name -> default, or REQUIRED
    inputs: tuple[str, ...]  # input roles; a trailing "*" role is variadic
    infer: Callable[[list[Shape], dict[str, Any]], Shape]
    reference: Callable[..., np.ndarray]
    optional_inputs: int = 0  # how many trailing roles may be absent

    def arity_ok(self, n: int) -> bool:
        if self.inputs and self.inputs[-1].endswith("*"):
            return n >= len(self.inputs) - 1
        return len(self.inputs) - self.optional_inputs <= n <= len(self.inputs)

    def normalize_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(attrs) - set(self.attrs))
        if unknown:
            raise ShapeError(
                f"{self.name} has no attribute {', '.join(map(repr, unknown))}; "
                f"it takes {', '.join(self.attrs) or 'none'}"
            )
        out = {}
        for key, default in self.attrs.items():
            if key in attrs:
                out[key] = attrs[key]
            elif default is REQUIRED:
                raise ShapeError(f"{self.name} needs the attribute {key!r}")
            else:
                out[key] = default
        return out


OPS: dict[str, OpDef] = {}


def register(
    name: str,
    doc: str,
    inputs: tuple[str, ...],
    attrs: dict[str, Any] | None = None,
    optional_inputs: int = 0,
) -> Callable:
    """Decorate a ``(infer, reference)`` pair factory; keeps each op in one place."""

    def wrap(cls: type) -> type:
        OPS[name] = OpDef(
            name=name,
            doc=doc,
            attrs=dict(attrs or {}),
            inputs=inputs,
            infer=cls.infer,
            reference=cls.reference,
            optional_inputs=optional_inputs,
        )
        return cls

    return wrap


def get(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; known ops: {', '.join(sorted(OPS))}") from None


# Which ops each backend lowers: filled by each backend's lowering module at import, so
# ``missing_lowerings`` can answer without a backend keeping a second list.
LOWERED: dict[str, set[str]] = {}
SOURCES = frozenset({"input", "param"})  # graph sources: no backend lowers them as ops


def register_backend(name: str, ops) -> None:
    """Record that backend ``name`` lowers ``ops`` (the keys of its lowering table)."""
    LOWERED[name] = set(ops)


def missing_lowerings(name: str) -> list[str]:
    """The registered ops backend ``name`` cannot lower (sources excepted), sorted."""
    return sorted(set(OPS) - SOURCES - LOWERED.get(name, set()))
