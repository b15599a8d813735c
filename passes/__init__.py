"""Compiler passes (``resdsl.passes``): one pass a file, registered by name, run by the manager."""

from __future__ import annotations

from resdsl.ir import Graph

from . import (  # noqa: F401  (importing a pass module registers it)
    cse,
    dce,
    eliminate_identity,
    fold_batchnorm,
    fuse_add,
    scale_residuals,
    shortcuts,
)
from .manager import PASSES, PassOptions, PassResult, PipelineResult, register_pass, run_passes

# What each -O level runs, in order. Cleanups come first so that each rewrite sees the
# final use counts: a dead or duplicate use of a conv, or a no-op between a conv and its
# batch norm, would otherwise block the fold, and a second run would still find work.
LEVELS: dict[int, list[str]] = {
    0: ["shortcuts"],
    1: ["shortcuts", "dce", "eliminate_identity", "fold_batchnorm"],
    2: ["shortcuts", "dce", "eliminate_identity", "cse", "fold_batchnorm", "fuse_add"],
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
