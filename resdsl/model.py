"""``@resdsl.model``: a function that builds a graph, with its defaults and arguments."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ResdslError, SourceLoc
from .ir import Graph
from .nn import Tensor, building


@dataclass
class Model:
    """A model function plus the compile defaults its author chose (e.g. option-A shortcuts)."""

    fn: Callable[..., Any]
    shortcut: str = "B"
    seed: int = 0
    loc: SourceLoc | None = None
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.fn.__name__
        code = self.fn.__code__
        self.loc = SourceLoc(code.co_filename, code.co_firstlineno)

    @property
    def arguments(self) -> dict[str, Any]:
        sig = inspect.signature(self.fn)
        return {k: (None if p.default is inspect.Parameter.empty else p.default) for k, p in sig.parameters.items()}

    def build(self, **kwargs: Any) -> Graph:
        """Run the model function and return the raw graph (residual projections still pending)."""
        sig = inspect.signature(self.fn)
        try:
            bound = sig.bind(**kwargs)
        except TypeError as e:
            args = ", ".join(self.arguments) or "no arguments"
            raise ResdslError(f"model {self.name!r}: {e}", self.loc, f"it takes {args}") from None
        bound.apply_defaults()
        with building(self.name, self.seed) as b:
            result = self.fn(*bound.args, **bound.kwargs)
            graph = b.graph
            if not graph.outputs:
                outs = result if isinstance(result, (tuple, list)) else [result]
                for i, t in enumerate(outs):
                    if not isinstance(t, Tensor):
                        raise ResdslError(
                            f"model {self.name!r} returned {type(t).__name__}, not a tensor",
                            self.loc,
                            "return nn.output(name, x)",
                        )
                    graph.set_output("output" if len(outs) == 1 else f"output{i}", t.id)
        graph.meta["model"] = self.name
        graph.meta["arguments"] = dict(bound.arguments)
        graph.meta["shortcut"] = self.shortcut
        graph.meta["seed"] = self.seed
        if not graph.inputs:
            raise ResdslError(f"model {self.name!r} has no inputs", self.loc, "declare one with nn.input(name, shape)")
        return graph


def model(fn: Callable | None = None, *, shortcut: str = "B", seed: int = 0) -> Any:
    """Mark a function as a resdsl model: ``@resdsl.model`` or ``@resdsl.model(shortcut="A")``."""
    if shortcut not in ("A", "B", "C"):
        raise ResdslError(f"shortcut must be 'A', 'B' or 'C', not {shortcut!r}")

    def wrap(f: Callable) -> Model:
        return Model(f, shortcut=shortcut, seed=seed)

    return wrap(fn) if fn is not None else wrap
