"""Compiler passes (``resdsl.passes``): one pass a file, a frozen dataclass whose fields are its
options, registered by name, run by the manager; rewrites are rules applied by ``rewrite.py``."""

from __future__ import annotations

from resdsl.ir import Graph

from . import (  # noqa: F401  (importing a pass module registers it)
    convert_dtype,
    cse,
    dce,
    eliminate_identity,
    fold_batchnorm,
    fuse_add,
    quantize,
    scale_residuals,
    shortcuts,
)
from .base import PASSES, Pass, PassOptions, PassResult, option, register_pass
from .manager import PipelineResult, run_passes
from .rewrite import Match, Refusal, Rule, RuleReport, apply_rules
from .shortcuts import Shortcuts
from .spec import resolve

# What each -O level runs, in order. Cleanups come first so that each rewrite sees the
# final use counts: a dead or duplicate use of a conv, or a no-op between a conv and its
# batch norm, would otherwise block the fold, and a second run would still find work.
LEVELS: dict[int, list[str]] = {
    0: ["shortcuts"],
    1: ["shortcuts", "dce", "eliminate_identity", "fold_batchnorm"],
    2: ["shortcuts", "dce", "eliminate_identity", "cse", "fold_batchnorm", "fuse_add"],
}


def pipeline(level: int, options: PassOptions | None = None) -> list[str]:
    """The pass names -O``level`` runs; ``scale_residuals`` joins them when a scale is asked for."""
    names = list(LEVELS[level])
    if options is not None and options.residual_scale and "scale_residuals" in PASSES:
        names.insert(names.index("shortcuts") + 1, "scale_residuals")
    return names


def canonicalize(graph: Graph, shortcut: str | None = None) -> Graph:
    """The -O0 form every backend and analysis starts from."""
    return run_passes(graph, [Shortcuts(mode=shortcut)]).graph


__all__ = [
    "LEVELS",
    "PASSES",
    "Match",
    "Pass",
    "PassOptions",
    "PassResult",
    "PipelineResult",
    "Refusal",
    "Rule",
    "RuleReport",
    "apply_rules",
    "canonicalize",
    "option",
    "pipeline",
    "register_pass",
    "resolve",
    "run_passes",
]
