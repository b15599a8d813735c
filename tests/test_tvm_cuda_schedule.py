"""resdsl's CUDA implicit-GEMM schedule (backends/tvm/rules/cuda_gemm.py, cuda_direct.py), checked without a GPU.

The schedule's index arithmetic (im2col through ``reindex``, ``pad_einsum`` for ragged
shapes, the tile splits and the cooperative shared-memory fetches) is checked by
compiling the very same schedule with its thread bindings made serial for ``llvm``
and comparing with the reference interpreter. The CUDA module itself must compile,
with every convolution and matmul taken by the rule, and its source must show the
intended shared-memory tiles. On a machine with a GPU the CUDA module also runs.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest
from helpers import assert_close, example, interpret_random, randomize, single_op
from resdsl.passes import pipeline, run_passes

import resdsl
from resdsl.numerics import TOLERANCE, max_rel_error

tvm = pytest.importorskip("tvm")

from resdsl.backends.tvm import cuda_report  # noqa: E402
from resdsl.backends.tvm import pipeline as tvm_pipeline  # noqa: E402
from resdsl.backends.tvm.rules import cuda_direct, cuda_gemm  # noqa: E402

N = "N"
CUDA = {"kind": "cuda", "arch": "sm_90", "host": {"kind": "llvm"}}

# Shapes the ResNet zoo and ViT need, made small and ragged: channel counts no tile divides,
# odd feature maps (7x7, 15x15), a 7x7 stride-2 stem, 197 tokens, attention-style batched matmuls.
CONVS = [
    ("conv1x1_7x7", "conv2d", [(N, 24, 7, 7)], {}, {"w": (40, 24, 1, 1), "b": (40,)}),
    ("conv3x3_s1", "conv2d", [(N, 20, 9, 9)], {"padding": 1}, {"w": (36, 20, 3, 3), "b": (36,)}),
    ("conv3x3_s2_odd", "conv2d", [(N, 16, 15, 15)], {"stride": 2, "padding": 1}, {"w": (24, 16, 3, 3)}),
    ("conv7x7_s2_stem", "conv2d", [(N, 3, 33, 33)], {"stride": 2, "padding": 3}, {"w": (16, 3, 7, 7), "b": (16,)}),
    (
        "fused_conv_residual_relu",
        "fused_conv",
        [(N, 12, 7, 7), "w", "b", (N, 70, 7, 7)],
        {"padding": 1, "activation": "relu"},
        {"w": (70, 12, 3, 3), "b": (70,)},
    ),
    ("linear_197_tokens", "linear", [(N, 197, 40)], {}, {"w": (24, 40), "b": (24,)}),
    ("matmul_attention", "matmul", [(N, 3, 17, 8), (N, 3, 8, 17)], {}, {}),
]

GROUPED = [
    ("grouped", "conv2d", [(N, 8, 9, 9)], {"groups": 2, "padding": 1}, {"w": (8, 4, 3, 3), "b": (8,)}),
    ("depthwise", "conv2d", [(N, 12, 15, 15)], {"groups": 12, "stride": 2, "padding": 1}, {"w": (12, 1, 3, 3)}),
]


def cuda_target():
    return tvm.target.Target(CUDA)


@functools.cache
def _resnet18() -> resdsl.Graph:
    return run_passes(randomize(resdsl.load(example("resnet.py"), "resnet18", image_size=64)), pipeline(2)).graph


@functools.cache
def _vit() -> resdsl.Graph:
    g = resdsl.load(example("transformer.py"), "vit", image_size=32, patch=8, dim=32, depth=1, heads=2, num_classes=10)
    return run_passes(randomize(g), pipeline(2)).graph


def serial_llvm_run(graph: resdsl.Graph, batch: int | None, feeds: dict) -> tuple[dict, int]:
    """Run ``graph`` on the CPU with every kernel resdsl's CUDA rules take scheduled by them, thread
    bindings serial (``bind=False``); the other kernels stay plain loops. Returns the outputs
    and how many kernels the rules scheduled."""
    from tvm import relax

    target = cuda_target()
    mod = tvm_pipeline.fused_module(graph, target, batch)
    scheduled = 0
    with target:
        for gv, func in mod.functions_items():
            if not isinstance(func, tvm.tirx.PrimFunc):
                continue
            sch = cuda_gemm.schedule_gemm(func, bind=False) or cuda_direct.schedule_direct_conv(func, bind=False)
            if sch is not None:
                mod[gv] = sch.mod["main"]
                scheduled += 1
    llvm = tvm.target.Target({"kind": "llvm"})
    cpu = tvm_pipeline._backend(llvm)

    @tvm.transform.module_pass(opt_level=0, name="LowerScheduled")
    def lower_scheduled(m, _ctx):
        return tvm.transform.Sequential(cpu.dataflow_lower_passes(llvm) + cpu.finalize_passes(llvm))(m)

    with tvm.transform.PassContext(opt_level=3):
        vm = relax.VirtualMachine(tvm.compile(mod, llvm, relax_pipeline=lower_scheduled), tvm.cpu())
    result = vm["main"](*[tvm.runtime.tensor(feeds[graph.node(i).attrs["name"]]) for i in graph.inputs])
    return {name: v.numpy() for (name, _), v in zip(graph.outputs, result)}, scheduled


# ---------------------------------------------------------------- (b) the schedule's numbers, on the CPU


@pytest.mark.parametrize("case", CONVS, ids=[c[0] for c in CONVS])
def test_serial_schedule_equals_interpreter(case):
    _, op, shapes, attrs, params = case
    graph = single_op(op, shapes, attrs, params)
    feeds, want = interpret_random(graph, batch=2)
    got, scheduled = serial_llvm_run(graph, 2, feeds)
    assert scheduled == 1
    assert_close(got, want)


def test_serial_schedule_with_symbolic_batch():
    """N symbolic: the pixel axis (N x H x W) has no static extent and is padded at run time."""
    case = CONVS[2]
    graph = single_op(case[1], case[2], case[3], case[4])
    for batch in (1, 3):
        feeds, want = interpret_random(graph, batch=batch, seed=batch)
        got, scheduled = serial_llvm_run(graph, None, feeds)
        assert scheduled == 1
        assert_close(got, want)


@pytest.mark.parametrize("model,kernels", [("resnet18", 19), ("vit", 8)])
def test_serial_model_equals_interpreter(model, kernels):
    """Every kernel of a model at once: ResNet-18 (64x64: 18 convolutions and the classifier);
    a one-block ViT (patch conv, qkv, attention scores and values, projection, MLP, head)."""
    graph = _resnet18() if model == "resnet18" else _vit()
    feeds, want = interpret_random(graph, batch=2)
    got, scheduled = serial_llvm_run(graph, 2, feeds)
    assert scheduled == kernels
    assert_close(got, want)


def _run_kernel(func, arrays: list) -> np.ndarray:
    """Build a lone PrimFunc for llvm and run it; the last array is the output."""
    lib = tvm.compile(tvm.IRModule({"main": func}), target=tvm.target.Target({"kind": "llvm"}))
    tensors = [tvm.runtime.tensor(a) for a in arrays]
    lib["main"](*tensors)
    return tensors[-1].numpy()


def test_serial_schedule_of_operands_stored_the_other_way():
    """The fetch orders the models above never use: an NCHW conv's OIHW weights (``k`` their
    contiguous axis: the tile is stored ``[n][k]``), and a GEMM reading ``A`` as ``A[k, m]``
    (stored ``[k][m]``, read back with a vector load)."""
    from tvm import te, topi

    graph = single_op("conv2d", [(N, 5, 9, 9)], {"stride": 2, "padding": 1}, {"w": (12, 5, 3, 3)})
    feeds, want = interpret_random(graph, batch=2)
    x, w = te.placeholder((2, 5, 9, 9), name="x"), te.placeholder((12, 5, 3, 3), name="w")
    y = topi.nn.conv2d_nchw(x, w, 2, 1, 1)
    sch = cuda_gemm.schedule_gemm(te.create_prim_func([x, w, y]), bind=False)
    out = _run_kernel(sch.mod["main"], [feeds["x0"], graph.parameters["w"], np.zeros((2, 12, 5, 5), np.float32)])
    assert max_rel_error(out, want["y"]) < TOLERANCE

    rng = np.random.default_rng(0)
    a_t, b = rng.standard_normal((40, 37), np.float32), rng.standard_normal((40, 24), np.float32)
    a_te, b_te = te.placeholder((40, 37), name="a"), te.placeholder((40, 24), name="b")
    k = te.reduce_axis((0, 40), name="k")
    c = te.compute((37, 24), lambda i, j: te.sum(a_te[k, i] * b_te[k, j], axis=k), name="c")
    sch = cuda_gemm.schedule_gemm(te.create_prim_func([a_te, b_te, c]), bind=False)
    out = _run_kernel(sch.mod["main"], [a_t, b, np.zeros((37, 24), np.float32)])
    assert max_rel_error(out, a_t.T.astype(np.float64) @ b) < TOLERANCE


# ---------------------------------------------------------------- (a) which rule takes which kernel


def _unit_rows(func) -> bool:
    """Whether ``func``'s output has one row (a batch-1 classifier, ViT's class-token select): a
    matrix-vector product, which DLight's GEMV and Reduction rules are built for."""
    shape = [int(d) if isinstance(d, tvm.tirx.IntImm) else None for d in func.params[-1].shape]
    return len(shape) >= 2 and shape[-2] == 1


@pytest.mark.parametrize("model,batch", [("resnet18", 1), ("resnet18", None), ("vit", 1), ("vit", None)])
def test_every_conv_and_matmul_is_taken_by_the_rule(model, batch):
    graph = _resnet18() if model == "resnet18" else _vit()
    target = cuda_target()
    mod = tvm_pipeline.fused_module(graph, target, batch)
    report = cuda_report.cuda_schedule_report(mod, target)
    macs = {name for name in report if "conv2d" in name or "matmul" in name}
    assert any("conv2d" in name for name in macs) and any("matmul" in name for name in macs)
    for name in macs:
        if _unit_rows(mod[name]):
            assert report[name] in ("GEMV", "Reduction"), (name, report[name])
        else:
            assert report[name].startswith("implicit_gemm"), (name, report[name])
    assert cuda_report.cuda_schedule_report(mod, target, own_rules=False)[sorted(macs)[0]] != report[sorted(macs)[0]]


@pytest.mark.parametrize("case", GROUPED, ids=[c[0] for c in GROUPED])
def test_grouped_convolution_gets_the_direct_schedule(case):
    """No single GEMM: one output a thread (not DLight's GeneralReduction), same numbers."""
    graph = single_op(*case[1:])
    target = cuda_target()
    report = cuda_report.cuda_schedule_report(tvm_pipeline.fused_module(graph, target, 2), target)
    assert [v for k, v in report.items() if "conv" in k] == [f"direct_conv {cuda_direct.DIRECT_THREADS} threads"]
    feeds, want = interpret_random(graph, batch=2)
    got, scheduled = serial_llvm_run(graph, 2, feeds)
    assert scheduled == 1
    assert_close(got, want)


def test_tile_choice_fills_the_gpu():
    """Large maps get large tiles; 7x7 maps at batch 1 small ones, until the grid has a block per
    SM; a symbolic batch a middle one; few channels a narrow one."""
    assert cuda_gemm.choose_tile(56 * 56 * 8, 256) == cuda_gemm.GemmTile(8, 4)
    assert cuda_gemm.choose_tile(56 * 56, 64) == cuda_gemm.GemmTile(1, 4)  # 196 blocks
    assert cuda_gemm.choose_tile(7 * 7, 2048) == cuda_gemm.GemmTile(1, 2)  # 4 x 64 = 256 blocks
    assert cuda_gemm.choose_tile(None, 256) == cuda_gemm.GemmTile(4, 4)
    assert cuda_gemm.choose_tile(9, 10) == cuda_gemm.GemmTile(1, 1)


# ---------------------------------------------------------------- (c) the CUDA module and its source


def _cuda_source(executable) -> str:
    def find(m):
        if m.kind == "cuda":
            return m
        return next((found for i in m.imports if (found := find(i)) is not None), None)

    return find(executable.mod).inspect_source("cuda")


def test_cuda_module_compiles_and_has_shared_tiles():
    """ResNet's 56x56 3x3 conv at batch 8: 64x64 tiles, 4x4 accumulators a thread."""
    from resdsl.backends.tvm.lower import lower

    graph = single_op("conv2d", [(N, 64, 56, 56)], {"padding": 1}, {"w": (64, 64, 3, 3), "b": (64,)})
    target = cuda_target()
    tile = cuda_gemm.choose_tile(8 * 56 * 56, 64)
    assert tile == cuda_gemm.GemmTile(4, 4)
    with tvm.transform.PassContext(opt_level=3):
        ex = tvm.compile(lower(graph, 8), target, relax_pipeline=tvm_pipeline.pipeline(target))
    src = _cuda_source(ex)
    kernel = src[src.index("__launch_bounds__(256) fused_conv2d") :]
    kernel = kernel[kernel.index("{") :]
    kernel = kernel[: kernel.index('extern "C"')] if 'extern "C"' in kernel else kernel
    shared = dict((name, int(n)) for name, n in re.findall(r"__shared__ alignas\(\d+\) float (\w+)\[(\d+)\]", kernel))
    # The input tile BM x BK, rows padded to BK + 1; the weight tile BK x BN.
    assert sorted(shared.values()) == sorted([tile.bm * (cuda_gemm.BK + 1), cuda_gemm.BK * tile.bn])
    assert kernel.count("__syncthreads()") == 2  # before the fetch and before the compute
    assert "float4" in kernel  # the thread's 4 weights: one vector load from shared memory
    assert f"float conv2d_nhwc_intermediate_reindex_local_ptr[{tile.tm * tile.tn}]" in kernel


def test_rules_can_be_switched_off():
    """``pipeline(cuda_rules=False)`` (gpu_check's "dlight" variant) leaves the conv to DLight."""
    from resdsl.backends.tvm.lower import lower

    graph = single_op("conv2d", [(N, 8, 9, 9)], {"padding": 1}, {"w": (16, 8, 3, 3)})
    target = cuda_target()
    sources = {}
    for rules in (True, False):
        with tvm.transform.PassContext(opt_level=3):
            pipe = tvm_pipeline.pipeline(target, cuda_rules=rules)
            sources[rules] = _cuda_source(tvm.compile(lower(graph, 1), target, relax_pipeline=pipe))
    # Only resdsl's schedule stages each thread's operands from shared memory into registers.
    assert "reindex_pad_shared_local" in sources[True] and "shared_local" not in sources[False]


# ---------------------------------------------------------------- on a GPU


@pytest.mark.skipif(not tvm.cuda(0).exist, reason="no CUDA GPU here")
@pytest.mark.parametrize("model", ["convs", "resnet18", "vit"])
def test_cuda_module_equals_interpreter(model):
    from resdsl.backends.tvm.lower import lower
    from tvm import relax

    graphs = (
        [single_op(*c[1:]) for c in CONVS + GROUPED]
        if model == "convs"
        else [_resnet18() if model == "resnet18" else _vit()]
    )
    target = cuda_target()
    for graph in graphs:
        with tvm.transform.PassContext(opt_level=3):
            ex = tvm.compile(lower(graph, None), target, relax_pipeline=tvm_pipeline.pipeline(target))
        vm = relax.VirtualMachine(ex, tvm.cuda(0))
        for batch in (1, 3):
            feeds, want = interpret_random(graph, batch=batch, seed=batch)
            args = [tvm.runtime.tensor(feeds[graph.node(i).attrs["name"]], tvm.cuda(0)) for i in graph.inputs]
            result = vm["main"](*args)
            assert_close({name: v.numpy() for (name, _), v in zip(graph.outputs, result)}, want)
