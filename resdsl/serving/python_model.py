"""Triton Python-backend model written by ``resdsl export triton`` (copied verbatim as ``VERSION/model.py``).

It runs the resdsl artifact beside it (``model.onnx`` in ONNX Runtime, or ``model.so`` in the
Relax VM) through ``resdsl.backends.open_artifact``, which checks a TVM module against its
sidecar as ``resdsl run`` does. The module is loaded once per instance; each call of
``execute`` concatenates the requests Triton's dynamic batcher merged, runs them as one
batch and splits the outputs again.

Triton's Python stub runs its own embedded interpreter and ignores PYTHONPATH, so
``resdsl serve`` names the site-packages holding numpy, onnxruntime, tvm and resdsl in
RESDSL_SITE_PACKAGES; in NVIDIA's container, where resdsl is pip-installed, it is unset.
This file is never imported by resdsl itself.
"""

import json
import os
import site
import sys


def _use_site_packages() -> None:
    dirs = [d for d in os.environ.get("RESDSL_SITE_PACKAGES", "").split(os.pathsep) if d]
    sys.path[:0] = [d for d in dirs if d not in sys.path]  # ahead of the interpreter's own numpy
    for d in dirs:
        site.addsitedir(d)  # .pth files: an editable resdsl install


_use_site_packages()

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        from resdsl.backends import open_artifact

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params["resdsl.artifact"])
        device = "cuda" if args["model_instance_kind"] == "GPU" else "cpu"
        self.runner = open_artifact(path, device)
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.inputs = [spec.name for spec in self.runner.inputs]
        self.outputs = [spec.name for spec in self.runner.outputs]

    def execute(self, requests: list) -> list:
        feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs} for r in requests]
        try:
            if self.batched and len(feeds) > 1:
                sizes = [f[self.inputs[0]].shape[0] for f in feeds]
                merged = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
                result = self.runner.run(merged)
                cuts = np.cumsum(sizes)[:-1]
                parts = {n: np.split(result[n], cuts) for n in self.outputs}
                results = [{n: parts[n][i] for n in self.outputs} for i in range(len(feeds))]
            else:
                results = [self.runner.run(f) for f in feeds]
        except Exception as e:  # a ResdslError (bad feed) or a runtime failure: each request gets it
            error = pb_utils.TritonError(f"resdsl: {e}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(n, np.ascontiguousarray(r[n])) for n in self.outputs])
            for r in results
        ]
