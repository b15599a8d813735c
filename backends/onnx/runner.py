"""Running ONNX artifacts in ONNX Runtime, reporting the providers that actually run.

onnxruntime-gpu lists CUDAExecutionProvider even on machines without CUDA and
then silently falls back to the CPU, so the runner asks for CUDA only when a
driver is present (or the user forces it), and reports ``session.get_providers()``.
"""

from __future__ import annotations

import ctypes.util
import json
import os

import numpy as np

from resdsl.errors import ResdslError
from resdsl.feeds import TensorSpec, check_feeds

_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(bfloat16)": "bfloat16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
}


def cuda_driver_present() -> bool:
    return os.path.exists("/dev/nvidiactl") or ctypes.util.find_library("cuda") is not None


class OrtRunner:
    def __init__(self, path: str, device: str | None = None, optimize: bool = True, threads: int | None = None):
        import onnxruntime as ort

        if device not in (None, "cpu", "cuda"):
            raise ResdslError(f"unknown device {device!r}", hint="use cpu or cuda")
        available = ort.get_available_providers()
        want_cuda = device == "cuda" or (device is None and cuda_driver_present())
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise ResdslError(
                "--device cuda: this onnxruntime build has no CUDA provider", hint="install onnxruntime-gpu"
            )
        providers = ["CPUExecutionProvider"]
        if want_cuda and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if not optimize:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(path, sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for unreadable models
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ResdslError(
                f"cannot load {path!r} in ONNX Runtime: {first}", hint="recompile it with resdsl compile"
            ) from None
        self.providers = self.session.get_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in self.providers:
            raise ResdslError("--device cuda: ONNX Runtime could not use CUDA on this machine (no GPU or driver)")
        self.device = ", ".join(self.providers)
        self.path = path
        self.inputs = [self._spec(i) for i in self.session.get_inputs()]
        self.outputs = [self._spec(o) for o in self.session.get_outputs()]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.provenance = json.loads(meta["resdsl.provenance"]) if "resdsl.provenance" in meta else {}
        self.index_bounds = json.loads(meta.get("resdsl.index_bounds", "{}"))

    @staticmethod
    def _spec(arg) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else str(d) for d in arg.shape)
        return TensorSpec(arg.name, shape, _DTYPES.get(arg.type, arg.type))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(self.inputs, feeds)
        values = self.session.run(None, feeds)
        return {spec.name: v for spec, v in zip(self.outputs, values)}
