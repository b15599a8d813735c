"""resdsl's DLight schedule rules, one a module; each returns None where it does not apply.

CPU: ``kernel`` (multiply-accumulate register tiles), ``rows`` (softmax, layer norm),
``elementwise`` (everything else). CUDA: ``cuda_gemm`` (implicit GEMM), ``cuda_direct``
(grouped convolutions). ``common`` holds what they share. ``pipeline`` orders them.
"""
