"""The CPU rule for integer convolutions: uint8 x int8 -> int32 with AVX-512 VNNI.

``quant.int8_conv`` lowers each convolution of a quantized graph to
``C[n, h, w, o] += int32(X[n, h', w', c]) * int32(W[kh, kw, c, o])`` (NHWC, HWIO after
``ConvertLayout``) followed by its elementwise epilogue (the int32 bias, the scale back to
float32, relu, the residual join, the next requantization). This rule gives it the float
kernel's output-stationary register tile (``rules.kernel``: ``rows x reg`` accumulators of 16
int32 lanes, the outer tiles parallel, the input patch padded inside the tile, the epilogue
right after the tile), with two differences:

- The reduction over input channels is split by 4 and the innermost ``16 output channels x 4
  input channels`` is one ``vpdpbusd`` (``VNNI_DOT_16x4_INTRIN``): four input bytes of one
  pixel broadcast to all lanes, 64 weight bytes, 64 multiply-adds an instruction (16 for a
  float32 FMA). Channel counts must be multiples of 4 (the lowering pads the stem's 3) and the
  output channels of 16.
- The weights are packed at compile time as ``W[o // width, kh, kw, c // 4, o % width, c % 4]``
  (``width = reg x 16``): one tile's weights for one reduction step are ``reg`` consecutive
  64-byte vectors, in the order the tile reads them.

Tile books are not consulted: they were measured for float32 kernels of the same shape.
"""

from __future__ import annotations

from tvm.s_tir.dlight.base import ScheduleRule

from .common import block_index, int_extent, operand
from .kernel import _is_constant_weight, _pad_per_tile, _prepare_mac, _tile_mac

# int32 lanes of the vector unit: 16 (AVX-512 VNNI: zmm) or 8 (AVX-VNNI: ymm); a zmm by default
VECTOR = 16
DEPTH = 4  # input channels one vpdpbusd lane sums


def is_int8_mac(sch, mac) -> bool:
    """Whether ``mac`` multiplies uint8 data by int8 weights into int32."""
    stmt = sch.get(mac)
    term = stmt.body.value.b
    a, b = operand(term.a), operand(term.b)
    return str(stmt.body.buffer.dtype) == "int32" and _dtype(a) == "uint8" and _dtype(b) == "int8"


def schedule_int8(func, lanes: int = VECTOR):
    """VNNI-tile the uint8 x int8 convolution in ``func`` with ``lanes`` int32 accumulator lanes (16:
    AVX-512 VNNI, 8: AVX-VNNI); None when it is not one (or does not fit)."""
    from tvm import s_tir, tirx

    prepared = _prepare_mac(func, lanes)
    if prepared is None:
        return None
    sch, mac, blocks = prepared
    if not is_int8_mac(sch, mac) or not _is_constant_weight(func, sch.get(mac)):
        return None
    stmt = sch.get(mac)
    spatial = [iv for iv in stmt.iter_vars if iv.iter_type == tirx.IterVar.DataPar]
    reduction = [iv for iv in stmt.iter_vars if iv.iter_type != tirx.IterVar.DataPar]
    cols, depth = int_extent(spatial[-1].dom.extent), int_extent(reduction[-1].dom.extent)
    if cols is None or depth is None or cols % lanes or depth % DEPTH:
        return None
    pos = block_index(sch, blocks, mac)
    producers, consumers = blocks[:pos], blocks[pos + 1 :]
    try:
        for b in consumers:
            if any(iv.iter_type != tirx.IterVar.DataPar for iv in sch.get(b).iter_vars):
                return None
        # Producers that feed the epilogue (the residual's dequantize) compute in it.
        mac_inputs = {r.source.name for r in stmt.reads}
        feeds = [any(w.source.name in mac_inputs for w in sch.get(b).writes) for b in producers]
        for b, feeds_mac in zip(producers, feeds):
            if not feeds_mac:
                sch.compute_inline(b)
        producers = [b for b, feeds_mac in zip(producers, feeds) if feeds_mac]
        for b in consumers[:-1]:
            sch.compute_inline(b)
        # the float kernel's tile, the innermost 4 input channels inside the vector (no tile book:
        # the books were measured for float32 kernels of the same shapes)
        tile_loop, dot = _tile_mac(sch, mac, consumers[-1] if consumers else None, lanes, True, None, DEPTH)
        for b in producers:
            _pad_per_tile(sch, b, tile_loop, lanes)
        data = operand(sch.get(mac).body.value.b.a)
        sch.tensorize(dot, dot_intrin(data.source.scope(), lanes))
    except s_tir.ScheduleError:
        return None
    return sch


def dot_intrin(data_scope: str, lanes: int = VECTOR) -> str:
    """``C[i] += sum_k int32(A[k]) * int32(B[i, k])`` for ``lanes`` x 4, as one ``vpdpbusd`` (zmm for
    16 lanes, ymm for 8: AVX-512 VNNI or AVX-VNNI, the same LLVM intrinsic), with ``C`` in the
    ``local`` scope: TVM's ``VNNI_DOT_16x4_INTRIN`` declares its accumulator global, and the tile
    accumulates in a local buffer (which LLVM keeps in registers), so it does not match; and the
    LLVM that TVM 0.27 links declares ``llvm.x86.avx512.vpdpbusd.512`` over ``<64 x i8>``
    operands, where TVM's intrinsic passes ``<16 x i32>`` (LLVM's verifier rejects it).
    ``data_scope``: where the input bytes are (``local`` when the tile pads its patch)."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    name = f"resdsl_dot_{lanes}x4_u8i8i32_vnni_{data_scope}"
    try:
        TensorIntrin.get(name)
        return name
    except ValueError:
        pass
    acc, data, bits = f"int32x{lanes}", f"int8x{4 * lanes}", 32 * lanes
    llvm_name = f"llvm.x86.avx512.vpdpbusd.{bits}"

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), "uint8", offset_factor=1, scope=data_scope),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1, scope="local"),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1, scope=data_scope),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1, scope="local"),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            a = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(llvm_name),
                C.vload([0], dtype=acc),
                T.reinterpret(T.broadcast(a, lanes), dtype=data),
                B.vload([0, 0], dtype=data),
                dtype=acc,
            )

    TensorIntrin.register(name, desc, impl)
    return name


class Int8Kernel(ScheduleRule):
    """``schedule_int8`` as a DLight rule (listed before ``Kernel`` on a target with VNNI)."""

    def __init__(self, lanes: int = VECTOR) -> None:
        self.lanes = lanes

    def apply(self, func, target, tunable):
        return schedule_int8(func, self.lanes) if self.lanes in (8, 16) else None


def _dtype(expr) -> str:
    """The element type of a buffer load (empty for anything else)."""
    source = getattr(expr, "source", None)
    return str(source.dtype) if source is not None and hasattr(source, "dtype") else ""
