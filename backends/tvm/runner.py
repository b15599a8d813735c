"""Run a compiled TVM artifact (``OUT.so`` + ``OUT.json``) in the Relax VM.

Every check a user can fail is made before TVM sees anything, so a mistake is one
ResdslError rather than a C++ backtrace: the sidecar must exist and describe this
very library (sha256), the device it was built for must be present, and the
feeds must match the sidecar's names, shapes and dtypes.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from resdsl.errors import ResdslError
from resdsl.feeds import TensorSpec, check_feeds

from .artifact import FORMAT, INTERFACE_FUNCTION, interface_text, sha256_file, sidecar_path
from .errors import tvm_error_line
from .target import cpu_flags, isa_name, use_all_cores

_DEVICE_NAMES = {"cpu": "cpu", "llvm": "cpu", "cuda": "cuda", "gpu": "cuda"}


class TvmRunner:
    """A loaded TVM module; ``device`` names what actually runs it, e.g. ``tvm llvm cpu(0)``."""

    def __init__(self, path: str, device: str | None = None) -> None:
        self.path = path
        self.meta = read_sidecar(path)
        built_for = self.meta["device"]
        want = _DEVICE_NAMES.get(device or built_for)
        if want is None:
            raise ResdslError(f"unknown device {device!r} for a TVM module", hint="use cpu or cuda")
        if want != built_for:
            raise ResdslError(
                f"{path} was compiled for {built_for}, it cannot run on {want}",
                hint=f"recompile with --target {'cuda' if want == 'cuda' else 'llvm'}",
            )
        _check_cpu(path, self.meta)
        self.inputs = [_spec(s) for s in self.meta["inputs"]]
        self.index_bounds = {s["name"]: int(s["index_bound"]) for s in self.meta["inputs"] if "index_bound" in s}
        self.provenance: dict[str, Any] = self.meta.get("provenance") or {}
        self.outputs = [_spec(s) for s in self.meta["outputs"]]

        use_all_cores()
        import tvm
        from tvm import relax

        if built_for == "cuda":
            if not tvm.cuda(0).exist:
                raise ResdslError(
                    f"{path} is a CUDA module but no GPU is present on this machine",
                    hint="run it on a machine with an NVIDIA GPU, or compile with --target llvm",
                )
            self._dev = tvm.cuda(0)
            self.device = f"tvm cuda(0) {self.meta['arch']} ({self._dev.device_name})"
        else:
            self._dev = tvm.cpu(0)
            self.device = "tvm llvm cpu(0)"
        try:
            library = tvm.runtime.load_module(os.path.abspath(path))
            self._vm = relax.VirtualMachine(library, self._dev)
            self._main = self._vm["main"]
        except Exception as e:
            raise ResdslError(
                f"cannot load TVM library {path}: {tvm_error_line(e)}", hint="recompile it with 'resdsl compile'"
            ) from e
        _check_interface(path, self.meta, self._vm)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns the outputs by name, in the artifact's output order."""
        import tvm

        check_feeds(self.inputs, feeds)
        args = [tvm.runtime.tensor(np.ascontiguousarray(feeds[s.name]), self._dev) for s in self.inputs]
        try:
            result = self._main(*args)
        except Exception as e:
            raise ResdslError(f"the TVM module failed: {tvm_error_line(e)}") from e
        return {spec.name: value.numpy() for spec, value in zip(self.outputs, result)}


def read_sidecar(path: str) -> dict[str, Any]:
    """Load ``OUT.json`` and check that it describes the library at ``path`` byte for byte."""
    meta_path = sidecar_path(path)
    if not os.path.exists(meta_path):
        raise ResdslError(
            f"{path} has no sidecar {meta_path}: its inputs and target are unknown",
            hint="keep OUT.json beside OUT.so, or recompile with 'resdsl compile'",
        )
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        for key in ("sha256", "device", "inputs", "outputs"):
            if key not in meta:
                raise ValueError(f"no {key!r}")
    except (OSError, ValueError, AttributeError) as e:
        raise ResdslError(f"sidecar {meta_path} is unreadable: {e}", hint="recompile with 'resdsl compile'") from None
    if sha256_file(path) != meta["sha256"]:
        raise ResdslError(
            f"{path} does not match its sidecar {meta_path} (sha256 differs): the library was modified or replaced",
            hint="recompile it with 'resdsl compile'; never run a library you did not build",
        )
    return meta


def _check_interface(path: str, meta: dict[str, Any], vm) -> None:
    """The sidecar's inputs and outputs must be the ones the library itself states."""
    try:
        embedded = str(vm[INTERFACE_FUNCTION]())
    except Exception:
        raise ResdslError(
            f"{path} does not state its interface (built by an older resdsl)", hint="recompile it with 'resdsl compile'"
        ) from None
    if embedded == interface_text(meta):
        return
    theirs = json.loads(embedded)
    diffs = [
        f"{kind} {i}: sidecar {mine!r}, library {lib!r}"
        for kind in ("inputs", "outputs")
        for i, (mine, lib) in enumerate(zip(meta[kind], theirs[kind]))
        if mine != lib
    ] or [f"the sidecar lists {len(meta['inputs'])} inputs and {len(meta['outputs'])} outputs"]
    raise ResdslError(
        f"the sidecar {sidecar_path(path)} was edited: it does not describe {path} ({'; '.join(diffs)})",
        hint="recompile with 'resdsl compile'; never edit the sidecar",
    )


def _check_cpu(path: str, meta: dict[str, Any]) -> None:
    """Refuse a CPU library built for instructions this CPU lacks (it would die of SIGILL)."""
    here = {isa_name(f) for f in cpu_flags()}
    missing = sorted(f for f in meta.get("cpu_flags") or [] if isa_name(f) not in here) if here else []
    if missing:
        raise ResdslError(
            f"{path} was built for a CPU with {', '.join(missing)}, which this CPU lacks",
            hint="recompile it on this machine with 'resdsl compile --target llvm' (or for an older CPU with --mcpu)",
        )


def _spec(entry: dict[str, Any]) -> TensorSpec:
    return TensorSpec(entry["name"], tuple(entry["shape"]), entry.get("dtype", "float32"))
