"""Compiler passes (``resdsl.passes``): one pass a file, registered by name, run by the manager."""

from __future__ import annotations

from resdsl.ir import Graph

from . import shortcuts  # noqa: F401  (registers the pass)
from .manager import PASSES, PassOptions, PassResult, PipelineResult, register_pass, run_passes

# What each -O level runs, in order.
LEVELS: dict[int, list[str]] = {
    0: ["shortcuts"],
    1: ["shortcuts"],
    2: ["shortcuts"],
}


def pipeline(level: int, options: PassOptions | None = None) -> list[str]:
    names = list(LEVELS[level])
    if options is not None and options.residual_scale and "scale_residuals" in PASSES:
        names.insert(names.index("shortcuts") + 1, "scale_residuals")
    return names


def canonicalize(graph: Graph, shortcut: str | None = None) -> Graph:
    """The -O0 form every backend and analysis starts from."""
    return run_passes(graph, LEVELS[0], PassOptions(shortcut=shortcut)).graph


__all__ = [
    "LEVELS",
    "PASSES",
    "PassOptions",
    "PassResult",
    "PipelineResult",
    "canonicalize",
    "pipeline",
    "register_pass",
    "run_passes",
]
