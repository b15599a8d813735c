"""resdsl: declare residual networks in a small Python DSL, compile them, run them."""

from __future__ import annotations

from . import nn, ops  # noqa: F401  (ops registers the op definitions)
from .errors import ResdslError, SourceLoc
from .interpreter import interpret, random_inputs
from .ir import Graph, Node
from .loader import load, load_models
from .model import Model, model
from .numerics import max_rel_error

__version__ = "0.1.0"

__all__ = [
    "Graph",
    "Model",
    "Node",
    "ResdslError",
    "SourceLoc",
    "interpret",
    "load",
    "load_models",
    "max_rel_error",
    "model",
    "nn",
    "random_inputs",
]
