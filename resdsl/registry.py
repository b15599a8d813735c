"""The op registry: each op defined once, with its attributes, shape and dtype rules,
reference, MAC count and test cases (the op families live in ``resdsl/ops/``).

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
class Attr:
    """An attribute: its default (or REQUIRED) and the normaliser that gives it one canonical form.

    Normalising at node creation (``2`` -> ``(2, 2)`` for a stride) means passes and
    backends read one form, and two spellings of the same op compare equal in CSE.
    """

    default: Any = REQUIRED
    normalize: Callable[[Any], Any] | None = None


# (case id, input shapes -- or names of params --, attrs, params as shapes or arrays):
# one small instance of an op, run by every backend's op tests.
Case = tuple[str, list, dict, dict]
MacRule = Callable[[Shape, list[Shape], dict[str, Any]], int]
DtypeRule = Callable[[list[str], dict[str, Any]], str]


def no_macs(out: Shape, ins: list[Shape], attrs: dict[str, Any]) -> int:
    return 0


def same_dtype(dtypes: list[str], attrs: dict[str, Any]) -> str:
    """The default dtype rule: the first input's (float32 for an op with none)."""
    return dtypes[0] if dtypes else "float32"


@dataclass(frozen=True)
class OpDef:
    name: str
    doc: str
    attrs: dict[str, Attr]
    inputs: tuple[str, ...]  # input roles; a trailing "*" role is variadic
    infer: Callable[[list[Shape], dict[str, Any]], Shape]
    reference: Callable[..., np.ndarray]
    optional_inputs: int = 0  # how many trailing roles may be absent
    # Multiply-accumulates per sample (batch 1), from the output and input shapes: what `show` counts.
    macs: MacRule = no_macs
    dtype: DtypeRule = same_dtype
    cases: tuple[Case, ...] = ()

    def arity_ok(self, n: int) -> bool:
        if self.inputs and self.inputs[-1].endswith("*"):
            return n >= len(self.inputs) - 1
        return len(self.inputs) - self.optional_inputs <= n <= len(self.inputs)

    def prepare(self, attrs: dict[str, Any] | None, n_inputs: int) -> dict[str, Any]:
        """The normalised attributes of a node with ``n_inputs`` inputs; ShapeError when either is wrong."""
        out = self.normalize_attrs(dict(attrs or {}))
        if not self.arity_ok(n_inputs):
            raise ShapeError(f"{self.name} takes inputs {self.inputs}, got {n_inputs}")
        return out

    def normalize_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(attrs) - set(self.attrs))
        if unknown:
            raise ShapeError(
                f"{self.name} has no attribute {', '.join(map(repr, unknown))}; "
                f"it takes {', '.join(self.attrs) or 'none'}"
            )
        out = {}
        for key, attr in self.attrs.items():
            if key in attrs:
                value = attrs[key]
            elif attr.default is REQUIRED:
                raise ShapeError(f"{self.name} needs the attribute {key!r}")
            else:
                value = attr.default
            if attr.normalize is not None and value is not None:
                try:
                    value = attr.normalize(value)
                except (TypeError, ValueError) as e:
                    raise ShapeError(f"{self.name}: attribute {key}={value!r}: {e}") from None
            out[key] = value
        return out


OPS: dict[str, OpDef] = {}


def register(
    name: str,
    doc: str,
    inputs: tuple[str, ...],
    attrs: dict[str, Any] | None = None,
    optional_inputs: int = 0,
    macs: MacRule = no_macs,
    dtype: DtypeRule = same_dtype,
    cases: list[Case] | None = None,
) -> Callable:
    """Decorate a class holding ``infer`` and ``reference``: the op's whole definition in one place.

    ``attrs`` maps a name to an ``Attr`` or, for an attribute without a normaliser, its default.
    """
    if name in OPS:
        raise ValueError(f"op {name!r} is registered twice")

    def wrap(cls: type) -> type:
        OPS[name] = OpDef(
            name=name,
            doc=doc,
            attrs={k: v if isinstance(v, Attr) else Attr(v) for k, v in (attrs or {}).items()},
            inputs=inputs,
            infer=cls.infer,
            reference=cls.reference,
            optional_inputs=optional_inputs,
            macs=macs,
            dtype=dtype,
            cases=tuple(cases or ()),
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
