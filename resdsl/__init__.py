"""resdsl: declare residual networks in a small Python DSL, compile them, run them."""

from __future__ import annotations

from . import nn, ops, weights  # noqa: F401  (ops registers the op definitions, weights the checkpoint reader)
from .driver import canonical, load
from .errors import ResdslError, SourceLoc
from .interpreter import interpret, random_inputs
from .ir import Graph, Node
from .loader import load_models
from .model import Model, model
from .numerics import max_rel_error
from .version import __version__  # noqa: E402

__all__ = [
    "__version__",
    "Graph",
    "Model",
    "Node",
    "ResdslError",
    "SourceLoc",
    "canonical",
    "interpret",
    "load",
    "load_models",
    "max_rel_error",
    "model",
    "nn",
    "random_inputs",
]
