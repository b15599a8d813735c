"""resdsl's own CPU schedules for TVM: fast ``llvm`` modules without tuning.

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
2. **Kernels** (``schedule_kernel``): every fused PrimFunc whose core is a
   multiply-accumulate reduction ``C[..] += A[..] * B[..]`` (conv2d, fused_conv,
   linear, matmul) gets an output-stationary register tile: ``rows x (reg x lanes)``
   accumulators stay in vector registers for the whole reduction, the outer tiles
   run in parallel, the input patch a tile reads is padded inside the tile, and
   the epilogue (bias, residual add, activation) runs right after the tile, on
   the registers' values. The constant weights are repacked tile by tile at
   compile time (``_pack_weight``), so a tile streams its weights in order.
3. **Everything else** (``schedule_elementwise``): pooling, means, transposes and
   elementwise functions get parallel outer loops and a vectorised inner loop.
4. **Tuning.** With ``db`` (``resdsl tune``), MetaSchedule's records are applied
   first; the kernels they cover keep the tuned schedule and the rules skip them
   (``tirx.is_scheduled``).

The target comes from ``llvm_target()``: the build machine's CPU (LLVM's name for
it), so LLVM uses its whole vector unit; the artifact runs on that CPU family.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .tvm_winograd import winograd_passes

# Accumulator registers a kernel tile may use: AVX-512 has 32 vector registers,
# AVX2 16; the rest hold the weight vectors and the broadcast input.
_ACC_REGISTERS = {16: 28, 8: 12, 4: 12}
MAX_ROWS = 14


@dataclass(frozen=True)
class CpuInfo:
    """What the schedules need to know about the build machine's CPU."""

    mcpu: str  # LLVM's name for it, e.g. "skylake-avx512"
    lanes: int  # float32 lanes of its widest vector unit
    cores: int


@functools.lru_cache(maxsize=1)
def host_cpu() -> CpuInfo:
    """The machine we compile on: LLVM's CPU name and the float32 SIMD width from /proc/cpuinfo."""
    from tvm.target import codegen

    flags = cpu_flags()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    return CpuInfo(str(codegen.llvm_get_system_cpu()), lanes, os.cpu_count() or 1)


def cpu_flags() -> set[str]:
    """This machine's CPU feature flags, as /proc/cpuinfo lists them (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


ISA_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "bmi", "amx")
# /proc/cpuinfo names that are not LLVM's once punctuation is dropped.
_CPUINFO_ALIASES = {"pni": "sse3", "bmi1": "bmi"}


def isa_name(flag: str) -> str:
    """One spelling for an instruction set: /proc/cpuinfo says ``sse4_2``, ``avx512_bf16``,
    ``pni``; LLVM says ``sse4.2``, ``avx512bf16``, ``sse3``. Both become ``sse42`` etc."""
    name = re.sub(r"[^a-z0-9]", "", flag.lower())
    return _CPUINFO_ALIASES.get(name, name)


def isa_flags(tdict: dict[str, Any] | None = None) -> list[str]:
    """The instruction-set extensions a library for ``tdict`` may use (a machine that lacks
    one would die of an illegal instruction, so the runner checks first): for the
    build machine's CPU what /proc/cpuinfo lists, for another ``--mcpu`` what LLVM
    enables for it."""
    if tdict is None or tdict.get("mcpu") == host_cpu().mcpu:
        flags = cpu_flags()
    else:
        import tvm
        from tvm.target import codegen

        flags = set(codegen.llvm_get_cpu_features(tvm.target.Target(tdict)))
    return sorted({isa_name(f) for f in flags if f.startswith(ISA_PREFIXES)})


def llvm_target(cpu: CpuInfo | None = None, mcpu: str | None = None) -> dict[str, Any]:
    """The llvm target for this machine, or for the CPU family ``mcpu`` (LLVM's name, e.g.
    ``haswell``, ``skylake-avx512``, ``x86-64-v3``): mcpu lets LLVM use the whole vector unit."""
    cpu = cpu or host_cpu()
    if mcpu is not None:
        from tvm.target import codegen

        from resdsl.errors import ResdslError

        if not codegen.llvm_is_valid_cpu(mcpu, codegen.llvm_get_system_triple()):
            raise ResdslError(
                f"LLVM does not know the CPU {mcpu!r}",
                hint=f"use an LLVM CPU name such as x86-64-v3, haswell, skylake-avx512 (this one is {cpu.mcpu})",
            )
    return {"kind": "llvm", "mcpu": mcpu or cpu.mcpu, "num-cores": cpu.cores}


def lanes_of(target) -> int:
    """float32 lanes of ``target``'s vector unit (from its mcpu; 4 when unknown)."""
    from tvm.target import codegen

    try:
        return max(4, int(codegen.llvm_get_vector_width(target)) // 32)
    except Exception:  # an mcpu LLVM does not know: plain SSE is always there
        return 4


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


def mutator_pass(name: str, mutator_class):
    """A module pass that runs ``mutator_class`` (a Relax ``PyExprMutator``) over every Relax
    function of the module; the functions it adds (``call_te``) come with the result."""
    import tvm
    from tvm import relax

    @tvm.transform.module_pass(opt_level=0, name=name)
    def run(mod, _ctx):
        mutator = mutator_class(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                mutator.builder_.update_func(gv, mutator.visit_expr(func))
        return mutator.builder_.get()

    return run


def fused_passes(target, winograd: bool = True) -> list:
    """Everything up to and including FuseTIR: what MetaSchedule tasks are extracted from.

    ``resdsl tune`` and the compile pipeline share this list, so a tuned kernel's
    workload is structurally the kernel the compiler later looks up.
    """
    from tvm import relax

    legalize = _backend(target).legalize_passes(target)
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

    from .tvm_lower import lower

    with target, tvm.transform.PassContext(opt_level=3):
        return tvm.transform.Sequential(fused_passes(target, winograd))(lower(graph, batch))


def schedule_passes(
    target, db: str | None = None, tiles: Mapping[str, Tile] | None = None, cuda_rules: bool = True
) -> list:
    """After FuseTIR: the tuned database first, then resdsl's rules for everything it left. On
    CUDA (``tvm_cuda_schedule``, unless ``cuda_rules`` is False) they take the multiply-accumulate
    kernels; the target's own DLight rules follow later and skip every scheduled kernel."""
    from tvm import relax
    from tvm.s_tir import dlight

    passes = []
    if db is not None:
        passes.append(relax.transform.MetaScheduleApplyDatabase(check_db(db)))
    if target.kind.name != "llvm":
        if cuda_rules:
            from . import tvm_cuda_schedule

            passes.append(dlight.ApplyDefaultSchedule(*tvm_cuda_schedule.cuda_rules()))
        return passes
    passes.append(dlight.ApplyDefaultSchedule(*cpu_rules(lanes_of(target), tiles)))
    # Weight packing (see _pack_weight): split the copies out, then run them now.
    passes += [relax.transform.SplitLayoutRewritePreproc(), relax.transform.FoldConstant()]
    return passes


def check_db(db: str) -> str:
    """A database directory as ``resdsl tune`` writes it, or a ResdslError saying what to do."""
    from resdsl.errors import ResdslError

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
    tiles: Mapping[str, Tile] | None = None,
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


def cpu_rules(lanes: int, tiles: Mapping[str, Tile] | None = None) -> list:
    """The dlight rules, most specific first; ``tiles`` as for ``schedule_kernel``."""
    from tvm.s_tir.dlight.base import ScheduleRule

    class Kernel(ScheduleRule):
        def apply(self, func, target, tunable):
            return schedule_kernel(func, lanes, tiles)

    class Rows(ScheduleRule):
        def apply(self, func, target, tunable):
            return schedule_rows(func, lanes)

    class Elementwise(ScheduleRule):
        def apply(self, func, target, tunable):
            return schedule_elementwise(func, lanes)

    return [Kernel(), Rows(), Elementwise()]


# ---------------------------------------------------------------- kernels


def _int(extent) -> int | None:
    from tvm import tirx

    return int(extent.value) if isinstance(extent, tirx.IntImm) else None


def _divisor(n: int, limit: int, power_of_two: bool = False) -> int:
    """The largest divisor of ``n`` not above ``limit`` (a power of two if asked)."""
    for d in range(min(n, limit), 0, -1):
        if n % d == 0 and (not power_of_two or d & (d - 1) == 0):
            return d
    return 1


def mac_reduction(sch, block) -> str | None:
    """Why ``block`` is not ``C[..] = C[..] + A[..] * B[..]`` over spatial then reduction
    iterators with C's last index the last spatial one; None when it is."""
    from tvm import ir, tirx

    stmt = sch.get(block)
    kinds = [iv.iter_type for iv in stmt.iter_vars]
    spatial = [iv for iv in stmt.iter_vars if iv.iter_type == tirx.IterVar.DataPar]
    nred = len(kinds) - len(spatial)
    if (
        nred == 0
        or len(spatial) < 2
        or kinds != [tirx.IterVar.DataPar] * len(spatial) + [tirx.IterVar.CommReduce] * nred
    ):
        return "not spatial loops then reduction loops"
    body = stmt.body
    if not isinstance(body, tirx.BufferStore) or not isinstance(body.value, tirx.Add):
        return "body is not an accumulation"
    acc, term = body.value.a, body.value.b
    if not isinstance(acc, ir.TensorLoad) or not acc.source.same_as(body.buffer):
        return "body does not accumulate into its output"
    if not isinstance(term, tirx.Mul):
        return "accumulated term is not a product"
    last = body.indices[-1]
    if not (isinstance(last, tirx.Var) and last.same_as(spatial[-1].var)):
        return "output's last axis is not the last spatial loop"
    return None


def schedule_kernel(func, lanes: int, tiles: Mapping[str, Tile] | None = None):
    """Register-tile the multiply-accumulate PrimFunc ``func``; None when it has none.

    Loops, outer to inner: the outer spatial loops and the outer tiles of the two
    innermost output axes (fused, parallel); every reduction loop; then ``rows``
    (unrolled) x ``reg`` (unrolled) x ``lanes`` (vectorised) accumulators. For an
    NHWC conv the rows are output columns and the vector is output channels: each
    step of the reduction broadcasts one input value and does ``rows x reg`` FMAs.
    ``tiles`` maps ``MacShape.key()`` to a measured tile (``resdsl tune --method tiles``
    and the shipped tile books); a kernel it does not cover gets ``choose_tile``'s.
    """
    from tvm import s_tir, tirx

    prepared = _prepare_mac(func, lanes)
    if prepared is None:
        return None
    sch, mac, blocks = prepared
    pos = _index(sch, blocks, mac)
    producers, consumers = blocks[:pos], blocks[pos + 1 :]
    try:
        for b in consumers:
            if any(iv.iter_type != tirx.IterVar.DataPar for iv in sch.get(b).iter_vars):
                return None
        for b in consumers[:-1]:
            sch.compute_inline(b)
        tile_loop = _tile_mac(
            sch, mac, consumers[-1] if consumers else None, lanes, _is_constant_weight(func, sch.get(mac)), tiles
        )
        for b in producers:
            _pad_per_tile(sch, b, tile_loop, lanes)
    except (s_tir.ScheduleError, _NotTiled):
        return None
    return sch


def _prepare_mac(func, lanes: int):
    """``(schedule, mac block, root blocks)`` with the MAC's iteration space padded (``_pad_mac``);
    None when ``func`` has no single multiply-accumulate."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root")) if _has_root(sch) else []
    macs = [b for b in blocks if mac_reduction(sch, b) is None]
    if len(macs) != 1:
        return None
    (mac,) = macs
    try:
        if _pad_mac(sch, mac, lanes, _is_constant_weight(func, sch.get(mac))):
            blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except s_tir.ScheduleError:
        return None
    return sch, mac, blocks


def kernel_shape(func, lanes: int) -> MacShape | None:
    """The ``MacShape`` that ``schedule_kernel`` will tile in ``func`` (None: not a kernel)."""
    prepared = _prepare_mac(func, lanes)
    try:
        return None if prepared is None else mac_shape(prepared[0], prepared[1])
    except _NotTiled:
        return None


def padded_rows(rows: int) -> int:
    """The row tile for ``rows`` output rows that no good tile divides (197 tokens): the one
    in 7..MAX_ROWS wasting the fewest padded rows, the larger on ties."""
    return min(range(MAX_ROWS, 6, -1), key=lambda r: -(-rows // r) * r)


def _pad_mac(sch, mac, lanes: int, constant_weight: bool) -> bool:
    """Pad the iteration space of ``mac`` when its last two axes tile badly (a prime number of
    tokens): rows up to a multiple of ``padded_rows``, columns up to whole vectors.

    ``pad_einsum`` adds zero-padded copies of the operands (small: one tile's rows or
    columns each, once ``_pad_per_tile`` moves them into the tile) and an output copy
    that the epilogue absorbs; without it the tile degenerates to one row of scalars.
    Constant weights keep their columns: their packing needs the original shape.
    Returns whether it padded.
    """
    from tvm import tirx

    stmt = sch.get(mac)
    spatial = [iv for iv in stmt.iter_vars if iv.iter_type == tirx.IterVar.DataPar]
    rows, cols = _int(spatial[-2].dom.extent), _int(spatial[-1].dom.extent)
    padding = [1] * len(stmt.iter_vars)
    if rows is not None and rows > MAX_ROWS and _divisor(rows, MAX_ROWS) < 4:
        padding[len(spatial) - 2] = padded_rows(rows)
    if cols is not None and not constant_weight and cols > lanes and cols % lanes:
        padding[len(spatial) - 1] = lanes
    if all(p == 1 for p in padding):
        return False
    sch.pad_einsum(mac, padding)
    return True


def _is_constant_weight(func, stmt) -> bool:
    """Whether the product's second operand is a parameter Relax binds to a constant
    (AttachAttrLayoutFreeBuffers lists those), so its layout is ours to choose."""
    from tvm import ir

    load = stmt.body.value.b.b
    free = func.attrs.get("layout_free_buffers") if func.attrs is not None else None
    if not free or not isinstance(load, ir.TensorLoad):
        return False
    return any(func.params[int(i)].same_as(load.source) for i in free)


def _has_root(sch) -> bool:
    try:
        sch.get_sblock("root")
        return True
    except Exception:
        return False


def _index(sch, blocks, block) -> int:
    target = sch.get(block)
    return next(i for i, b in enumerate(blocks) if sch.get(b).same_as(target))


@dataclass(frozen=True)
class Tile:
    """One register tile: ``rows x reg`` vectors of ``vec`` lanes, and the outer loop order."""

    rows: int
    reg: int
    vec: int
    channels_outer: bool  # iterate output-channel tiles outside spatial tiles (weights stay in cache)


def choose_tile(rows: int | None, cols: int, lanes: int, outer: int, weight: int, data: int) -> Tile:
    """The tile that fills the accumulator registers, as many rows as possible first.

    Each reduction step loads ``rows`` broadcasts and ``reg`` weight vectors for
    ``rows * reg`` FMAs (measured on AVX-512: 14x2 beats 7x4 at 14x14 outputs, 7x4
    beats 7x2 at 7x7). The loop order re-reads the smaller total: the weights once
    per spatial tile, or the input once per channel tile (``outer`` spatial
    iterations, ``weight`` and ``data`` element counts of the two operands).
    """
    vec = _divisor(cols, lanes, power_of_two=True)
    budget = _ACC_REGISTERS.get(lanes, 12)
    row = _divisor(rows, min(MAX_ROWS, budget)) if rows is not None else 1
    reg = next(r for r in (4, 2, 1) if cols % (r * vec) == 0 and row * r <= max(budget, row))
    spatial_tiles = outer * ((rows or 1) // row)
    channel_tiles = cols // (reg * vec)
    return Tile(row, reg, vec, channels_outer=channel_tiles * data < spatial_tiles * weight)


@dataclass(frozen=True)
class MacShape:
    """The iteration space of one multiply-accumulate kernel: all a tile choice depends on.

    Its ``key()`` names a kernel in a tile book independently of TVM's function names
    and hashes (which change with the epilogue and between TVM versions): the
    spatial extents, the reduction extents and the operand sizes (which tell a
    stride-2 conv from a stride-1 one of the same output).
    """

    outer: tuple[int | str, ...]  # spatial extents before the last two; "N" where symbolic
    rows: int | None
    cols: int
    reduction: tuple[int | str, ...]
    data: int
    weight: int

    def key(self) -> str:
        def dims(values) -> str:
            return "x".join(str(v) for v in values)

        return f"{dims(self.outer)}/{self.rows}x{self.cols}/r{dims(self.reduction)}/d{self.data}/w{self.weight}"

    @property
    def outer_count(self) -> int:
        return math.prod(v for v in self.outer if isinstance(v, int))


def mac_shape(sch, mac) -> MacShape:
    from tvm import tirx

    stmt = sch.get(mac)
    spatial = [iv for iv in stmt.iter_vars if iv.iter_type == tirx.IterVar.DataPar]
    reduction = [iv for iv in stmt.iter_vars if iv.iter_type != tirx.IterVar.DataPar]

    def extent(iv) -> int | str:
        value = _int(iv.dom.extent)
        return "N" if value is None else value

    cols = _int(spatial[-1].dom.extent)
    if cols is None:
        raise _NotTiled()
    term = stmt.body.value.b
    return MacShape(
        outer=tuple(extent(iv) for iv in spatial[:-2]),
        rows=_int(spatial[-2].dom.extent),
        cols=cols,
        reduction=tuple(extent(iv) for iv in reduction),
        data=_elements(term.a),
        weight=_elements(term.b),
    )


def default_tile(shape: MacShape, lanes: int) -> Tile:
    return choose_tile(shape.rows, shape.cols, lanes, shape.outer_count, shape.weight, shape.data)


def tile_fits(tile: Tile, shape: MacShape, lanes: int) -> bool:
    """Whether ``tile`` divides ``shape`` and fits the vector unit (a tile book may be stale)."""
    return (
        tile.vec == _divisor(shape.cols, lanes, power_of_two=True)
        and shape.cols % (tile.reg * tile.vec) == 0
        and (shape.rows or 1) % tile.rows == 0
    )


def tile_candidates(shape: MacShape, lanes: int) -> list[Tile]:
    """The tiles worth measuring for ``shape``: every row count dividing the rows and register
    count dividing the columns that uses between a third of and all the accumulator
    registers, in both loop orders; the default tile first."""
    vec = _divisor(shape.cols, lanes, power_of_two=True)
    budget = _ACC_REGISTERS.get(lanes, 12)
    rows = shape.rows or 1
    row_options = [r for r in range(1, min(rows, budget) + 1) if rows % r == 0]
    regs = [r for r in (1, 2, 3, 4, 6, 8) if shape.cols % (r * vec) == 0]
    fits = [(r, g) for r in row_options for g in regs if r * g <= budget]
    best = max(r * g for r, g in fits)
    chosen = [(r, g) for r, g in fits if r * g * 3 >= min(best, budget)]
    default = default_tile(shape, lanes)
    tiles = [Tile(r, g, vec, order) for r, g in chosen for order in (False, True)]
    return [default] + [t for t in tiles if t != default]


def _elements(expr) -> int:
    """Elements of the buffer ``expr`` loads from (0 when it is not a plain load)."""
    from tvm import ir

    if not isinstance(expr, ir.TensorLoad):
        return 0
    return math.prod(_int(d) or 1 for d in expr.source.ty.shape)


def _tile_mac(sch, mac, epilogue, lanes: int, pack: bool, tiles: Mapping[str, Tile] | None = None):
    from tvm import tirx

    stmt = sch.get(mac)
    nspatial = sum(iv.iter_type == tirx.IterVar.DataPar for iv in stmt.iter_vars)
    loops = sch.get_loops(mac)
    spatial, reduction = loops[:nspatial], loops[nspatial:]
    shape = mac_shape(sch, mac)
    tile = (tiles or {}).get(shape.key())
    if tile is None or not tile_fits(tile, shape, lanes):
        tile = default_tile(shape, lanes)
    term = stmt.body.value.b
    c_o, c_r, c_v = sch.split(spatial[-1], [None, tile.reg, tile.vec])
    r_o, r_i = sch.split(spatial[-2], [None, tile.rows])
    outer_loops = [*spatial[:-2], r_o]
    outer_loops = [c_o, *outer_loops] if tile.channels_outer else [*outer_loops, c_o]
    sch.reorder(*outer_loops, *reduction, r_i, c_r, c_v)
    if pack:
        _pack_weight(sch, mac, term.b, tile.reg * tile.vec)
    # Accumulate in a tile-sized local buffer: with its indices constant after unrolling,
    # LLVM keeps it in registers across the reduction (a global buffer would be
    # reloaded and stored on every step, as LLVM cannot prove it aliases nothing).
    store = sch.cache_write(mac, 0, "local")
    if epilogue is not None:
        sch.compute_inline(store)
        store = epilogue
    sch.reverse_compute_at(store, outer_loops[-1])
    tile_loop = sch.fuse(*outer_loops)
    sch.parallel(tile_loop)
    sch.unroll(r_i)
    sch.unroll(c_r)
    sch.vectorize(c_v)
    init = sch.decompose_reduction(mac, reduction[0])
    init_loop = sch.get_loops(init)[-1]
    if sch.get(init_loop).kind != sch.get(c_v).kind:
        sch.vectorize(init_loop)
    last = sch.get_loops(store)[-1]
    extent = _int(sch.get(last).extent)
    if extent is not None and extent % tile.vec == 0 and extent > tile.vec:
        last = sch.split(last, [None, tile.vec])[-1]
    sch.vectorize(last)
    return tile_loop


def _pad_per_tile(sch, block, tile_loop, lanes: int) -> None:
    """Pad only the input patch a tile reads, inside the tile, into a local buffer.

    A padded copy of the whole input is a heap workspace of up to a few MB allocated on
    every call; the patch (a few rows of ``rows + kernel - 1`` pixels) is a small
    stack buffer, still in L1 when the tile reads it. Overlapping patches are padded
    twice, which costs ~1% of the tile's FMAs.
    """
    from tvm import s_tir

    try:
        sch.compute_at(block, tile_loop)
        sch.set_scope(block, 0, "local")
    except s_tir.ScheduleError:
        _parallel_vectorize(sch, block, lanes)
        return
    inner = sch.get_loops(block)[-1]
    extent = _int(sch.get(inner).extent)
    if extent is not None and extent % lanes == 0:
        sch.vectorize(sch.split(inner, [None, lanes])[-1])


def _pack_weight(sch, mac, load, width: int) -> None:
    """Store the constant operand tile by tile: ``W[.., oc]`` -> ``W[oc // width, .., oc % width]``.

    Then the weights of one output tile are one contiguous stream (the reduction walks
    them in order), instead of ``width`` floats out of every row. The copy is a block
    marked ``meta_schedule.layout_rewrite_preproc``: SplitLayoutRewritePreproc moves it
    out of the kernel and FoldConstant runs it at compile time.
    """
    stmt = sch.get(mac)
    index = next(i for i, region in enumerate(stmt.reads) if region.source.same_as(load.source))
    copy = sch.cache_read(mac, index, "global")
    sch.annotate(copy, "meta_schedule.layout_rewrite_preproc", True)
    sch.transform_layout(mac, ("read", index), lambda *i: (i[-1] // width, *i[:-1], i[-1] % width))


class _NotTiled(Exception):
    pass


# ---------------------------------------------------------------- everything else


def _parallel_vectorize(sch, block, lanes: int) -> None:
    """Parallel outer spatial loops, a vectorised innermost loop when it is spatial and long enough."""
    from tvm import tirx

    stmt = sch.get(block)
    loops = sch.get_loops(block)
    kinds = [iv.iter_type for iv in stmt.iter_vars]
    nspatial = 0
    for k in kinds:
        if k != tirx.IterVar.DataPar:
            break
        nspatial += 1
    if nspatial == 0 or len(loops) != len(kinds):
        return
    spatial = loops[:nspatial]
    inner = None
    if nspatial == len(loops):  # purely spatial: vectorise the innermost loop
        extent = _int(sch.get(spatial[-1]).extent)
        if extent is not None and extent >= lanes:
            vec = _divisor(extent, lanes, power_of_two=True)
            if vec > 1:
                *spatial_head, inner = [*spatial[:-1], *sch.split(spatial[-1], [None, vec])]
                spatial = spatial_head
    if spatial:
        sch.parallel(sch.fuse(*spatial) if len(spatial) > 1 else spatial[0])
    if inner is not None:
        sch.vectorize(inner)


def schedule_elementwise(func, lanes: int):
    """Inline what can be inlined, then parallelise and vectorise each remaining block."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    if not _has_root(sch):
        return None
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    for b in blocks[:-1]:
        try:
            sch.compute_inline(b)
        except s_tir.ScheduleError:
            pass
    for b in sch.get_child_blocks(sch.get_sblock("root")):
        try:
            _parallel_vectorize(sch, b, lanes)
        except s_tir.ScheduleError:
            return None
    return sch


def schedule_rows(func, lanes: int):
    """Softmax and layer norm over the last axis: the whole function one row at a time.

    Their blocks (row max, exp, row sum, normalise; or mean, variance, normalise)
    share the leading "row" axes and loop over the last one. The elementwise rule
    ran each block over the whole tensor in turn, with the exp inlined twice, so
    every pass re-read the tensor from memory and the polynomial exp ran twice.
    Here one parallel loop walks the rows and every block runs inside it on that
    row; row-sized intermediates (the exps) are local, computed once and still
    in L1 for the next block. None when ``func`` is not of that shape.
    """
    from tvm import s_tir, tirx

    sch = s_tir.Schedule(func)
    if not _has_root(sch):
        return None
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    stmts = [sch.get(b) for b in blocks]
    last = stmts[-1]
    nrow = len(last.iter_vars) - 1
    if (
        len(blocks) < 2
        or nrow < 1
        or any(iv.iter_type != tirx.IterVar.DataPar for iv in last.iter_vars)
        or not any(s.iter_vars[-1].iter_type == tirx.IterVar.CommReduce for s in stmts)
    ):
        return None
    rows = [str(iv.dom.extent) for iv in last.iter_vars[:nrow]]
    for stmt in stmts:
        if len(stmt.iter_vars) not in (nrow, nrow + 1) or [str(iv.dom.extent) for iv in stmt.iter_vars[:nrow]] != rows:
            return None
        if any(iv.iter_type != tirx.IterVar.DataPar for iv in stmt.iter_vars[:nrow]):
            return None
    width = _int(last.iter_vars[-1].dom.extent)
    try:
        loops = sch.get_loops(blocks[-1])
        row = sch.fuse(*loops[:nrow]) if nrow > 1 else loops[0]
        sch.parallel(row)
        for b in reversed(blocks[:-1]):
            sch.compute_at(b, row)
        for b in blocks[:-1]:
            if len(sch.get(b).iter_vars) == nrow + 1 and sch.get(b).iter_vars[-1].iter_type == tirx.IterVar.DataPar:
                sch.set_scope(b, 0, "local")
        if width is not None and width % lanes == 0:
            for b in blocks:
                stmt = sch.get(b)
                if len(stmt.iter_vars) == nrow + 1 and stmt.iter_vars[-1].iter_type == tirx.IterVar.DataPar:
                    sch.vectorize(sch.split(sch.get_loops(b)[-1], [None, lanes])[-1])
    except s_tir.ScheduleError:
        return None
    return sch
