"""What a pass is: a frozen dataclass whose fields are its options, registered by name.

A pass object is its configuration and nothing else (no state survives a run), so
``shortcuts{mode=A}`` written in a pipeline and ``Shortcuts(mode="A")`` written in Python
are the same thing, and ``resdsl passes`` can list every option with its default by
reading the fields. ``option(...)`` adds what the CLI needs: the legacy flag that
fills the field (``--shortcut`` fills ``shortcuts.mode``), its allowed values and help.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from resdsl.ir import Graph

from .rewrite import Rule, RuleReport


@dataclass
class PassOptions:
    """The legacy CLI flags that fill pass options (``--shortcut``, ``--residual-scale``)."""

    shortcut: str | None = None  # A, B or C; None: the model's own default
    residual_scale: str | None = None  # None, "inv-depth" or a number as text


@dataclass
class PassResult:
    graph: Graph
    modified: bool
    counts: dict[str, int] = field(default_factory=dict)
    report: RuleReport | None = None  # for passes written as rules: what each rule did and refused


@dataclass(frozen=True)
class Pass:
    """A compiler pass: ``run(graph) -> PassResult``, options as dataclass fields."""

    name: ClassVar[str] = ""
    rules: ClassVar[tuple[Rule, ...]] = ()  # the rules it applies, if written as rules (``--explain``)

    def run(self, graph: Graph) -> PassResult:
        raise NotImplementedError

    def spec(self) -> str:
        """The pipeline text that rebuilds this pass: ``shortcuts{mode=A}``, or just ``dce``."""
        given = [
            f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self) if getattr(self, f.name) != f.default
        ]
        return f"{self.name}{{{' '.join(given)}}}" if given else self.name


def option(default: Any = None, *, help: str, flag: str | None = None, choices: tuple[str, ...] = ()) -> Any:
    """A pass option: a dataclass field with the help, legacy flag and choices the CLI shows."""
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices})


@dataclass(frozen=True)
class PassInfo:
    name: str
    cls: type[Pass]
    doc: str

    def options(self) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(self.cls)


PASSES: dict[str, PassInfo] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Register a pass class under its ``name``; its docstring's first line is its summary."""
    if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        raise TypeError(f"pass {cls.__name__} must be a frozen dataclass (its fields are its options)")
    doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
    PASSES[cls.name] = PassInfo(cls.name, cls, doc)
    return cls
