"""The Relax pipelines resdsl compiles with: fast ``llvm`` modules without tuning, and ``cuda``.

TVM's default CPU pipeline legalises every Relax op to a plain loop nest and
schedules none of them: a ResNet runs scalar and single-threaded, 35-60x slower
than ONNX Runtime. ``pipeline(target, db)`` is that pipeline with four additions:

1. **Layout.** Before legalisation, ``ConvertLayout`` rewrites every conv2d to
   NHWC activations and HWIO weights. Then the output channel is the innermost,
   contiguous axis of the output, of the weights, of the bias and of the residual,
   so one rule vectorises convolutions, their epilogues and matmuls alike. The
   weight transposes are of constants: ``FoldConstant`` does them at compile time.
   Max-pool and global-average-pool follow the layout; only the network's input
   and its last feature map are transposed at run time.
2. **Kernels** (``rules.kernel``): every fused PrimFunc whose core is a
   multiply-accumulate reduction ``C[..] += A[..] * B[..]`` (conv2d, fused_conv,
   linear, matmul) gets an output-stationary register tile: ``rows x (reg x lanes)``
   accumulators stay in vector registers for the whole reduction, the outer tiles
   run in parallel, the input patch a tile reads is padded inside the tile, and
   the epilogue (bias, residual add, activation) runs right after the tile, on
   the registers' values. The constant weights are repacked tile by tile at
   compile time (``rules.kernel._pack_weight``), so a tile streams its weights in order.
   In an int8 graph on a CPU with VNNI, the convolutions are integer ones (``quant.int8_conv``)
   and ``rules.int8`` gives them the same tile with ``vpdpbusd`` for the multiply-accumulate.
3. **Everything else** (``rules.elementwise``, ``rules.rows``): pooling, means, transposes and
   elementwise functions get parallel outer loops and a vectorised inner loop.
4. **NaN.** relu and clip legalise to selects that keep a NaN (``nan.py``); TOPI's
   ``max(x, 0)`` answered 0, at the same one ``vmaxps`` an element.
5. **Tuning.** With ``db`` (``resdsl tune``), MetaSchedule's records are applied
   first; the kernels they cover keep the tuned schedule and the rules skip them
   (``tirx.is_scheduled``).

The target comes from ``target.llvm_target()``: the build machine's CPU (LLVM's name for
it), so LLVM uses its whole vector unit; the artifact runs on that CPU family.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from resdsl.errors import ResdslError

from .mutator import mutator_pass
from .nan import nan_legalize
from .target import has_vnni, lanes_of, vnni_lanes
from .winograd import winograd_passes

# ---------------------------------------------------------------- the pipeline


def layout_passes() -> list:
    """NHWC activations, HWIO weights: the output channel becomes the contiguous axis."""
    from tvm import relax

    return [relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]}), relax.transform.Normalize()]


def fast_math_passes() -> list:
    """Vectorisable exp and erf: softmax, exp and gelu's erf become TOPI's polynomial forms.

    LLVM has no vector ``expf``/``erff`` here, so ``T.exp``/``T.erf`` in a vectorised loop
    become one libm call a lane: erf cost ViT's MLP more than its matmul. TOPI's
    ``fast_exp`` and ``fast_erf`` (Cephes and Eigen's rational fits, errors near float32
    rounding) are plain arithmetic that vectorises and fuses into the matmul epilogue.
    ``FastMathTransform`` rewrites ``relax.erf``, not ``relax.nn.gelu``: expand gelu first.
    """
    from tvm import relax, topi
    from tvm.relax import PyExprMutator, expr_functor

    @expr_functor.mutator
    class _ExpandGelu(PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if getattr(call.op, "name", None) != "relax.nn.gelu":
                return call
            return self.builder_.call_te(
                lambda x: topi.multiply(x, topi.add(0.5, topi.multiply(0.5, topi.fast_erf(topi.multiply(x, SQRT1_2))))),
                call.args[0],
                primfunc_name_hint="gelu",
            )

    return [mutator_pass("ResdslExpandGelu", _ExpandGelu), relax.transform.FastMathTransform()]


SQRT1_2 = 0.7071067811865476


def fused_passes(target, winograd: bool = True) -> list:
    """Everything up to and including FuseTIR: what MetaSchedule tasks are extracted from.

    ``resdsl tune`` and the compile pipeline share this list, so a tuned kernel's
    workload is structurally the kernel the compiler later looks up.
    """
    from tvm import relax

    legalize = [relax.transform.LegalizeOps(nan_legalize())] + _backend(target).legalize_passes(target)
    at = next(i for i, p in enumerate(legalize) if p.info.name == "FuseTIR") + 1
    if target.kind.name != "llvm":  # NHWC on CUDA too: the channel axis makes loads coalesce
        return layout_passes() + _backend(target).library_dispatch_passes(target) + legalize[:at]
    # Mark the constant (weight) parameters of each kernel: their layout is ours to choose.
    return (
        layout_passes()
        + winograd_passes(target, winograd)
        + fast_math_passes()
        + _backend(target).library_dispatch_passes(target)
        + legalize[:at]
        + [relax.transform.AttachAttrLayoutFreeBuffers()]
    )


def fused_module(graph, target, batch: int | None = None, winograd: bool = True):
    """``graph`` lowered and fused as the pipeline fuses it, before any schedule: what tuning
    extracts its tasks from and what the rules take (``fused_passes``)."""
    import tvm

    from .lower import lower

    int8 = int8_kernels(graph, dict(target.export()))
    with target, tvm.transform.PassContext(opt_level=3):
        return tvm.transform.Sequential(fused_passes(target, winograd))(lower(graph, batch, int8=int8))


def int8_kernels(graph, tdict) -> bool:
    """Whether ``graph`` gets integer convolutions for ``tdict``: it is quantized (it has ``quantize``
    nodes) and the target has VNNI; elsewhere its convs are float convs of dequantized values."""
    return has_vnni(tdict) and any(n.op == "quantize" for n in graph.nodes())


def schedule_passes(target, db: str | None = None, tiles: Mapping | None = None, cuda_rules: bool = True) -> list:
    """After FuseTIR: the tuned database first, then resdsl's rules for everything it left. On
    CUDA (``rules.cuda_gemm``, ``rules.cuda_direct``, unless ``cuda_rules`` is False) they take the multiply-accumulate
    kernels; the target's own DLight rules follow later and skip every scheduled kernel."""
    from tvm import relax
    from tvm.s_tir import dlight

    passes = []
    if db is not None:
        passes.append(relax.transform.MetaScheduleApplyDatabase(check_db(db)))
    if target.kind.name != "llvm":
        if cuda_rules:
            passes.append(dlight.ApplyDefaultSchedule(*gpu_rules()))
        return passes
    passes.append(dlight.ApplyDefaultSchedule(*cpu_rules(lanes_of(target), tiles, vnni_lanes(dict(target.export())))))
    # Weight packing (see _pack_weight): split the copies out, then run them now.
    passes += [relax.transform.SplitLayoutRewritePreproc(), relax.transform.FoldConstant()]
    return passes


def check_db(db: str) -> str:
    """A database directory as ``resdsl tune`` writes it, or a ResdslError saying what to do."""
    files = ("database_workload.json", "database_tuning_record.json")
    if not os.path.isdir(db):
        raise ResdslError(f"MetaSchedule database {db!r} does not exist", hint="create one with 'resdsl tune --db DIR'")
    if not all(os.path.exists(os.path.join(db, f)) for f in files):
        raise ResdslError(
            f"{db!r} is not a MetaSchedule database (no {files[0]})", hint="create one with 'resdsl tune'"
        )
    return db


def _backend(target):
    """TVM's own pass lists for the target. ``relax.pipeline.dataflow_lower_passes(llvm)``
    fails in TVM 0.27 (cpu_generic does not export it), so take the module itself."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu
    from tvm.relax.backend.cuda import pipeline as cuda

    return cpu if target.kind.name == "llvm" else cuda


def pipeline(
    target,
    db: str | None = None,
    tiles: Mapping | None = None,
    winograd: bool = True,
    cuda_rules: bool = True,
):
    """The Relax pipeline: the target's own (CPU or CUDA) pipeline with NHWC layout and resdsl's
    schedules added, a tuned database applied first. ``cuda_rules=False`` leaves every CUDA
    kernel to DLight's default rules (for comparison: ``benchmarks/gpu_check.py``)."""
    import tvm

    if db is not None:
        check_db(db)  # a user error now, not a C++ one mid-compile

    @tvm.transform.module_pass(opt_level=0, name="ResdslCpuPipeline")
    def _pipeline(mod, _ctx):
        cpu = _backend(target)
        with target:  # MetaScheduleApplyDatabase needs the target when it is constructed
            legalize = cpu.legalize_passes(target)
            at = next(i for i, p in enumerate(legalize) if p.info.name == "FuseTIR") + 1
            passes = (
                fused_passes(target, winograd)
                + schedule_passes(target, db, tiles, cuda_rules)
                + legalize[at:]
                + cpu.dataflow_lower_passes(target)
                + cpu.finalize_passes(target)
            )
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


def cpu_rules(lanes: int, tiles: Mapping | None = None, int8_lanes: int = 0) -> list:
    """The CPU DLight rules, most specific first; ``tiles`` as for ``rules.kernel.schedule_kernel``;
    ``int8_lanes`` the ``vpdpbusd`` width (``target.vnni_lanes``; 0: no int8 kernels)."""
    from .rules.elementwise import Elementwise
    from .rules.int8 import Int8Kernel
    from .rules.kernel import Kernel
    from .rules.rows import Rows

    return [Int8Kernel(int8_lanes), Kernel(lanes, tiles), Rows(lanes), Elementwise(lanes)]


def gpu_rules() -> list:
    """resdsl's DLight rules for CUDA, to run before DLight's defaults."""
    from .rules.cuda_direct import DirectConv
    from .rules.cuda_gemm import ImplicitGemm

    return [ImplicitGemm(), DirectConv()]
