"""Serving resdsl artifacts with NVIDIA Triton Inference Server.

``triton_repo`` writes a Triton model repository entry from any artifact (an ONNX
file, or a TVM ``.so`` with its sidecar, which Triton can only run through its Python
backend and ``python_model.py``); ``triton_server`` starts the ``tritonserver`` that
the ``nvidia-pytriton`` wheel bundles, for local use and tests.
"""
