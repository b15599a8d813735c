"""NaN-propagating legalisations of relu and clip (and so of every fused relu epilogue).

TOPI writes relu as ``max(x, 0)`` and clip as ``max(min(x, hi), lo)``; TVM's LLVM and CUDA
code generators emit ``max(a, b)`` as ``a > b ? a : b`` (or ``fmaxf``), which answers 0
for a NaN ``x``: a model that overflowed would report zeros where ONNX Runtime and the
reference interpreter report NaN. ``x < 0 ? 0 : x`` is the same one instruction on x86
(``maxps`` with its operands swapped returns its second operand when either is NaN) and
keeps the NaN. Installed as a custom map of the pipeline's LegalizeOps.
"""

from __future__ import annotations


def _relu(x):
    from tvm import te, tirx

    zero = tirx.const(0, x.dtype)
    return te.compute(x.shape, lambda *i: tirx.Select(x(*i) < zero, zero, x(*i)), name="relu")


def _clip(x, lo: float, hi: float):
    from tvm import te, tirx

    lo, hi = tirx.const(lo, x.dtype), tirx.const(hi, x.dtype)

    def value(*i):
        v = x(*i)
        return tirx.Select(v < lo, lo, tirx.Select(hi < v, hi, v))

    return te.compute(x.shape, value, name="clip")


def nan_legalize() -> dict:
    """``LegalizeOps``' custom map: op name -> ``(block builder, call) -> expr``."""

    def relu(bb, call):
        return bb.call_te(_relu, call.args[0], primfunc_name_hint="relu")

    def clip(bb, call):
        lo, hi = (float(a.value) for a in call.args[1:3])  # PrimValues of FloatImms
        return bb.call_te(lambda x: _clip(x, lo, hi), call.args[0], primfunc_name_hint="clip")

    return {"relax.nn.relu": relu, "relax.clip": clip}
