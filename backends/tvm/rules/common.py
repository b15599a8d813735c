"""Helpers the schedule rules share: constant extents, divisors, block lookup, the
multiply-accumulate test and the generic parallel + vectorise schedule (CPU); the
single-reduction lookup, the rule annotation and ``serialize`` (CUDA, checked on llvm)."""

from __future__ import annotations


def int_extent(extent) -> int | None:
    from tvm import tirx

    return int(extent.value) if isinstance(extent, tirx.IntImm) else None


def divisor(n: int, limit: int, power_of_two: bool = False) -> int:
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


def operand(expr):
    """A product's operand without its widening cast: float16/bfloat16 kernels accumulate in
    float32 as ``C += f32(A[..]) * f32(B[..])``, so the rules see through ``Cast`` to the load."""
    from tvm import tirx

    return expr.value if isinstance(expr, tirx.Cast) else expr


def has_root(sch) -> bool:
    try:
        sch.get_sblock("root")
        return True
    except Exception:
        return False


def block_index(sch, blocks, block) -> int:
    target = sch.get(block)
    return next(i for i, b in enumerate(blocks) if sch.get(b).same_as(target))


def parallel_vectorize(sch, block, lanes: int) -> None:
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
    if nspatial < len(loops) and _vectorize_over_reduction(sch, block, loops, nspatial, lanes):
        return
    spatial = loops[:nspatial]
    inner = None
    if nspatial == len(loops):  # purely spatial: vectorise the innermost loop
        extent = int_extent(sch.get(spatial[-1]).extent)
        if extent is not None and extent < lanes and len(spatial) > 1:
            # a short innermost axis (the 4 channels of the padded int8 input): vectorise it
            # with the one outside it
            outer_extent = int_extent(sch.get(spatial[-2]).extent)
            if outer_extent is not None:
                spatial = [*spatial[:-2], sch.fuse(spatial[-2], spatial[-1])]
                extent = outer_extent * extent
        if extent is not None and extent >= lanes:
            vec = divisor(extent, lanes, power_of_two=True)
            if vec > 1:
                *spatial_head, inner = [*spatial[:-1], *sch.split(spatial[-1], [None, vec])]
                spatial = spatial_head
    if spatial:
        sch.parallel(sch.fuse(*spatial) if len(spatial) > 1 else spatial[0])
    if inner is not None:
        sch.vectorize(inner)


def _vectorize_over_reduction(sch, block, loops, nspatial: int, lanes: int) -> bool:
    """A reduction whose output's last axis is long (pooling and means over NHWC: the channels):
    the reduction loops go inside the outer spatial loops and outside a vector of channels, so
    each step is one vector max or add over ``lanes`` channels instead of a scalar reduction
    per channel. Returns whether it applied."""
    from tvm import s_tir

    extent = int_extent(sch.get(loops[nspatial - 1]).extent)
    stmt = sch.get(block)
    if extent is None or extent < lanes or stmt.iter_vars[nspatial - 1].var not in _last_indices(stmt):
        return False
    if "bfloat16" in str(stmt.body.buffer.dtype):  # TVM's bfloat16 legalisation of a vector reduction
        return False  # stores bfloat16x16 into the uint16 storage: LLVM refuses it
    vec = divisor(extent, lanes, power_of_two=True)
    if vec < 4:
        return False
    try:
        c_o, c_v = sch.split(loops[nspatial - 1], [None, vec])
        outer = [*loops[: nspatial - 1], c_o]
        sch.reorder(*outer, *loops[nspatial:], c_v)
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        sch.parallel(fused)
        sch.vectorize(c_v)
        init = sch.decompose_reduction(block, loops[nspatial])
        sch.vectorize(sch.get_loops(init)[-1])
    except s_tir.ScheduleError:
        return False
    return True


def _last_indices(stmt) -> list:
    """The variables of the last index of the block's output store (the contiguous axis)."""
    from tvm import tirx

    body = stmt.body
    if not isinstance(body, tirx.BufferStore):
        return []
    last = body.indices[-1]
    return [last] if isinstance(last, tirx.Var) else []


# ---------------------------------------------------------------- CUDA rules

RULE_ATTR = "resdsl.cuda_schedule"  # block annotation: which schedule a CUDA rule chose


def single_reduction(func):
    """``(schedule, its one reduction block)``, or None (no root block: already lowered; or
    not exactly one reduction among spatial blocks)."""
    from tvm import s_tir
    from tvm.s_tir.dlight.gpu import matmul as dm

    sch = s_tir.Schedule(func)
    try:
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except Exception:
        return None
    reductions = dm.get_reduction_blocks(sch, blocks)
    if reductions is None or len(reductions) != 1:
        return None
    return sch, reductions[0]


def serialize(sch):
    """``sch``'s function with thread bindings as serial loops and shared buffers as global ones.

    Run serially, each "thread" fetches the whole shared tile (its own copy of the
    cooperative loops) before computing its part: the values are those the threads
    of a block would have fetched together, so the results equal the GPU's.
    """
    import tvm_ffi
    from tvm import s_tir, tirx

    def unbind(loop, mutator):
        if loop.kind != tirx.ForKind.THREAD_BINDING:
            return mutator.default_mutate(loop)
        return tirx.For(loop.loop_var, loop.min, loop.extent, tirx.ForKind.SERIAL, mutator.mutate(loop.body))

    func = sch.mod["main"]
    out = s_tir.Schedule(func.with_body(tvm_ffi.structural_mutate(func.body, [(tirx.For, unbind)])))
    for name in block_names(out.mod["main"]):
        block = out.get_sblock(name)
        for index, region in enumerate(out.get(block).writes):
            if region.source.scope() == "shared":
                out.set_scope(block, index, "global")
    return out


def block_names(func) -> list[str]:
    from tvm import s_tir

    names = []
    walk(func.body, s_tir.SBlock, lambda b: names.append(b.name_hint))
    return [n for n in names if n != "root"]


def walk(root, kind, visit) -> None:
    """Call ``visit`` on every node of type ``kind`` under ``root``."""
    import tvm_ffi

    tvm_ffi.structural_walk(root, [(kind, visit)])
