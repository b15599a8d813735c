"""Backends (``resdsl.backends``): turn an optimised Graph into an artifact, and run artifacts.

Heavy libraries (onnx, onnxruntime, tvm) are imported only when a target is used,
so ``resdsl --help`` stays instant.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from resdsl.errors import ResdslError
from resdsl.feeds import TensorSpec, check_feeds  # noqa: F401  (re-exported)
from resdsl.ir import Graph

from .options import CudaOptions, EmitOptions, LlvmOptions, OnnxOptions, TuningDb


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    extension: str
    module: str  # imported lazily; provides emit(graph, out_path, options) -> list[str]


TARGETS: dict[str, Target] = {
    "onnx": Target("onnx", "standard ONNX (fused_conv as Conv+Add+activation)", ".onnx", "resdsl.backends.onnx.emit"),
    "onnx-ort": Target(
        "onnx-ort", "ONNX with ONNX Runtime contrib ops (com.microsoft.FusedConv)", ".onnx", "resdsl.backends.onnx.emit"
    ),
    "llvm": Target("llvm", "TVM Relax module for the CPU", ".so", "resdsl.backends.tvm.build"),
    "cuda": Target(
        "cuda", "TVM Relax module for NVIDIA GPUs (--arch, default sm_90)", ".so", "resdsl.backends.tvm.build"
    ),
}
ALIASES = {"cpu": "llvm"}


def resolve_target(name: str) -> Target:
    key = ALIASES.get(name, name)
    if key not in TARGETS:
        known = ", ".join(list(TARGETS) + list(ALIASES))
        raise ResdslError(f"unknown target {name!r}", hint=f"choose one of {known}")
    return TARGETS[key]


# dtype + target pairs no artifact is written for, and why (measured with onnxruntime 1.31's CPU
# provider: it has no bfloat16 kernel for Conv, Gemm, MatMul, Add, Relu, MaxPool, Softmax and
# the rest, and its Python binding cannot feed a bfloat16 array).
_NO_DTYPE = {
    ("onnx", "bfloat16"): "ONNX Runtime's CPU provider has no bfloat16 kernels (Conv, MatMul, Add, Relu, ...)",
    ("onnx-ort", "bfloat16"): "ONNX Runtime's CPU provider has no bfloat16 kernels (Conv, MatMul, Add, Relu, ...)",
}


def check_dtype(dtype: str, target: str) -> None:
    """Refuse, before anything is built, a ``--dtype`` the target's runtime cannot run."""
    name = resolve_target(target).name
    why = _NO_DTYPE.get((name, dtype))
    if why:
        raise ResdslError(
            f"--dtype {dtype} cannot target {name}: {why}", hint="use --target llvm or cuda, or --dtype float16"
        )


def emit(graph: Graph, out_path: str, options: EmitOptions) -> list[str]:
    """Write the artifact for ``options.target`` (options are read, never changed); returns the files written."""
    target = resolve_target(options.target)
    return importlib.import_module(target.module).emit(graph, out_path, options)


def make_options(
    target: str,
    *,
    arch: str | None = None,
    batch: int | None = None,
    db: str | None = None,
    mcpu: str | None = None,
    winograd: bool = True,
    tophub: bool = True,
    provenance: Mapping[str, Any] | None = None,
) -> EmitOptions:
    """The options record for ``target`` (a name or alias) from the CLI's flags, made once.

    A flag the target does not read is a user mistake when it changes nothing silently:
    ``--mcpu`` off llvm, ``--db`` on onnx, a tile book as a cuda database.
    """
    name = resolve_target(target).name
    provenance = dict(provenance or {})
    if mcpu is not None and name != "llvm":
        raise ResdslError("--mcpu is for the llvm target", hint="drop --mcpu, or use --target llvm")
    parsed = TuningDb.parse(db) if db is not None else None
    if name in ("onnx", "onnx-ort"):
        if parsed is not None:
            raise ResdslError(f"--db is for the TVM targets (llvm, cuda), not {name}", hint="drop --db")
        return OnnxOptions(name, provenance)
    if name == "cuda":
        if parsed is not None and parsed.kind == "tiles":
            raise ResdslError(f"{parsed.path} is a CPU tile book, not a database for cuda", hint="drop --db")
        return CudaOptions(arch or "sm_90", parsed.path if parsed else None, batch, provenance)
    tiles = parsed.path if parsed is not None and parsed.kind == "tiles" else None
    metaschedule = parsed.path if parsed is not None and parsed.kind == "metaschedule" else None
    return LlvmOptions(mcpu, winograd, tophub, tiles, metaschedule, batch, provenance)


class Runner(Protocol):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    device: str  # what actually runs: the ORT providers, or the TVM device
    index_bounds: dict[str, int]  # integer inputs: how many rows the tables they index have


def index_bounds(graph: Graph) -> dict[str, int]:
    """Integer (index) inputs by name: the exclusive bound of their valid values, recorded in an
    artifact so that ``resdsl run --random`` feeds indices every table can look up."""
    from resdsl.interpreter import index_bound

    return {
        graph.node(nid).attrs["name"]: index_bound(graph, nid)
        for nid in graph.inputs
        if graph.node(nid).dtype.startswith("int")
    }

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def open_artifact(path: str, device: str | None = None) -> Runner:
    """Load an artifact for running, choosing the runner by file type."""
    if not os.path.exists(path):
        raise ResdslError(f"artifact {path!r} does not exist", hint="compile one with 'resdsl compile'")
    if path.endswith(".onnx"):
        from .onnx.runner import OrtRunner

        return OrtRunner(path, device)
    if path.endswith(".so"):
        from .tvm.runner import TvmRunner

        return TvmRunner(path, device)
    raise ResdslError(f"cannot run {path!r}: unknown artifact type", hint="expected a .onnx or .so file")
