"""The compile driver: model file -> canonical graph -> passes -> backend artifact.

It is the one layer that knows both the front end and the passes, so it owns
canonicalisation (running the shortcut pass on a freshly built graph): the DSL
builds raw graphs, the passes rewrite graphs, and neither imports the other.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import ResdslError
from .ir import Graph
from .loader import build_model, load_graph
from .model import Model


@dataclass
class CompileRequest:
    path: str
    model: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    level: int = 2
    passes: list[str] | None = None  # pass names or pipeline texts ("shortcuts{mode=A},dce"); None: -O level
    shortcut: str | None = None
    residual_scale: str | None = None
    weights: str | None = None
    verify: bool = False
    dump_after: str | None = None
    dump_dir: str | None = None
    explain: str | None = None  # a pass or rule whose refusals the pipeline result explains
    dtype: str = "float32"  # float16/bfloat16: convert_dtype runs last, after batch-norm folding
    keep_float32: str = "default"  # convert_dtype's float32 islands: default (the policy) or none


def canonicalize(graph: Graph, shortcut: str | None = None) -> Graph:
    """The -O0 form every backend and analysis starts from: projections inserted, shapes inferred."""
    from resdsl.passes import canonicalize as run_canonical

    return run_canonical(graph, shortcut)


def canonical(model: Model, shortcut: str | None = None, **kwargs: Any) -> Graph:
    """Build ``model`` with ``kwargs`` and canonicalise it."""
    return canonicalize(build_model(model, **kwargs), shortcut)


def load(path: str, name: str | None = None, **kwargs: Any) -> Graph:
    """Build a model of a model file and return its canonical graph (shortcuts inserted, shapes inferred)."""
    graph, _, _ = load_graph(path, name, kwargs)
    graph.meta["source"] = path
    return canonicalize(graph)


def signal_propagation(
    raw: Graph,
    residual_scale: str | None = None,
    shortcut: str | None = None,
    batch: int = 2,
    seed: int = 0,
) -> list:
    """Measure each residual block of a freshly built graph at initialisation (``resdsl analyze``).

    Residual scaling comes from the ``scale_residuals`` pass via the -O0 pipeline, so what is
    measured is what the compiler would emit.
    """
    from resdsl.passes import PASSES, PassOptions, pipeline, run_passes

    from .analysis import signal_propagation as measure

    canonical_graph = canonicalize(raw, shortcut)
    graph = None
    if residual_scale:
        if "scale_residuals" not in PASSES:
            raise ResdslError(
                "--residual-scale needs the scale_residuals pass, which this resdsl does not have",
                hint="run without --residual-scale",
            )
        options = PassOptions(shortcut=shortcut, residual_scale=residual_scale)
        graph = run_passes(raw, pipeline(0, options), options).graph
    return measure(canonical_graph, graph, batch=batch, seed=seed)


def provenance(path: str, model: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Where an artifact came from: enough to tell whether it matches a model file and arguments."""
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    args = json.dumps(arguments, sort_keys=True, default=str)
    return {
        "model_file": path,
        "model": model,
        "arguments": arguments,
        "model_sha256": digest,
        "hash": hashlib.sha256((digest + model + args).encode()).hexdigest()[:16],
    }


def _dtype_passes(req: CompileRequest, passes: list) -> list:
    """For a reduced dtype: batch-norm folding (unless the pipeline folds already), then convert_dtype.

    Why last: every rewrite before it (folding above all) computes in float32."""
    from resdsl.ops.cast import REDUCED
    from resdsl.passes import resolve

    if req.dtype == "float32":
        return []
    if req.dtype not in REDUCED:
        raise ResdslError(f"unknown dtype {req.dtype!r}", hint="use float32, float16 or bfloat16")
    if req.keep_float32 not in ("default", "none"):
        raise ResdslError(f"--keep-float32 {req.keep_float32!r}: use default or none")
    names = [p.name for p in passes]
    fold = [] if "fold_batchnorm" in names else ["fold_batchnorm"]
    return resolve([*fold, f"convert_dtype{{dtype={req.dtype} keep={req.keep_float32}}}"])


def build_graph(req: CompileRequest) -> tuple[Graph, Any]:
    """Build the model and run the requested passes; returns the graph and the pipeline result."""
    from resdsl.passes import LEVELS, PassOptions, pipeline, resolve, run_passes

    raw, model_name, model_shortcut = load_graph(req.path, req.model, req.arguments)
    raw.meta["source"] = req.path
    if req.level not in LEVELS:
        raise ResdslError(f"unknown optimisation level -O{req.level}", hint=f"use one of {sorted(LEVELS)}")
    options = PassOptions(shortcut=req.shortcut, residual_scale=req.residual_scale)
    passes = resolve(req.passes if req.passes is not None else pipeline(req.level, options), options)
    if "shortcuts" not in [p.name for p in passes]:
        passes = [*resolve(["shortcuts"], options), *passes]
    passes = [*passes, *_dtype_passes(req, passes)]
    chosen = {p.name: p for p in passes}  # the options the pipeline runs with, flags or text
    shortcut = chosen["shortcuts"].mode
    if req.weights:
        # Weights name the canonical graph's parameters (projections included): canonicalise first.
        from .weights import load_weights_file

        raw = canonicalize(raw, shortcut)
        load_weights_file(raw, req.weights)
    result = run_passes(
        raw, passes, verify=req.verify, dump_dir=req.dump_dir, dump_after=req.dump_after, explain=req.explain
    )
    prov = provenance(req.path, model_name, req.arguments)
    # What changes the function, so that `resdsl run --check` rebuilds the same one.
    prov["shortcut"] = shortcut or model_shortcut
    prov["residual_scale"] = chosen["scale_residuals"].scale if "scale_residuals" in chosen else None
    if req.weights:
        prov["weights"] = os.path.abspath(req.weights)
    if req.dtype != "float32":  # so that `run --check` rebuilds the reference in the same dtype
        prov["dtype"], prov["keep_float32"] = req.dtype, req.keep_float32
    result.graph.meta["provenance"] = prov
    return result.graph, result
