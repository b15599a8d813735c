"""Backends (``resdsl.backends``): turn an optimised Graph into an artifact, and run artifacts.

Heavy libraries (onnx, onnxruntime, tvm) are imported only when a target is used,
so ``resdsl --help`` stays instant.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from resdsl.errors import ResdslError
from resdsl.feeds import TensorSpec, check_feeds  # noqa: F401  (re-exported for runners)
from resdsl.ir import Graph


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    extension: str
    module: str  # imported lazily; provides emit(graph, out_path, options) -> list[str]


TARGETS: dict[str, Target] = {
    "onnx": Target("onnx", "standard ONNX (fused_conv as Conv+Add+activation)", ".onnx", "resdsl.backends.onnx_emit"),
    "onnx-ort": Target(
        "onnx-ort", "ONNX with ONNX Runtime contrib ops (com.microsoft.FusedConv)", ".onnx", "resdsl.backends.onnx_emit"
    ),
    "llvm": Target("llvm", "TVM Relax module for the CPU", ".so", "resdsl.backends.tvm_build"),
    "cuda": Target(
        "cuda", "TVM Relax module for NVIDIA GPUs (--arch, default sm_90)", ".so", "resdsl.backends.tvm_build"
    ),
}
ALIASES = {"cpu": "llvm"}


@dataclass
class EmitOptions:
    """What a backend needs beyond the graph: the target and where the artifact came from."""

    target: str
    arch: str = "sm_90"
    batch: int | None = None  # fix the symbolic batch dimension (TVM)
    db: str | None = None  # MetaSchedule database (a directory) or tile book (.json) to apply (TVM)
    tophub: bool = True  # apply the tile book resdsl ships for the target CPU (llvm)
    mcpu: str | None = None  # LLVM CPU name to build for (llvm); default: this machine's
    winograd: bool = True  # 3x3 stride-1 convs as Winograd F(m, 3) where it pays (llvm)
    provenance: dict[str, Any] = field(default_factory=dict)


def resolve_target(name: str) -> Target:
    key = ALIASES.get(name, name)
    if key not in TARGETS:
        known = ", ".join(list(TARGETS) + list(ALIASES))
        raise ResdslError(f"unknown target {name!r}", hint=f"choose one of {known}")
    return TARGETS[key]


def emit(graph: Graph, out_path: str, options: EmitOptions) -> list[str]:
    """Write the artifact for ``options.target``; returns the files written."""
    target = resolve_target(options.target)
    options.target = target.name
    return importlib.import_module(target.module).emit(graph, out_path, options)


class Runner(Protocol):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    device: str  # what actually runs: the ORT providers, or the TVM device

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def open_artifact(path: str, device: str | None = None) -> Runner:
    """Load an artifact for running, choosing the runner by file type."""
    if not os.path.exists(path):
        raise ResdslError(f"artifact {path!r} does not exist", hint="compile one with 'resdsl compile'")
    if path.endswith(".onnx"):
        from .ort_runner import OrtRunner

        return OrtRunner(path, device)
    if path.endswith(".so"):
        from .tvm_runner import TvmRunner

        return TvmRunner(path, device)
    raise ResdslError(f"cannot run {path!r}: unknown artifact type", hint="expected a .onnx or .so file")
