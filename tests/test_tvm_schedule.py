"""resdsl's CPU schedules for TVM: scheduled kernels equal the reference interpreter, really are
parallel and vectorised, and a tuning record in a database replaces the rule's schedule."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, example, interpret_random, randomize, single_op
from op_cases import op_cases
from resdsl.passes import pipeline, run_passes

import resdsl
from resdsl import nn

tvm = pytest.importorskip("tvm")

from resdsl.backends.tvm import pipeline as tvm_pipeline  # noqa: E402
from resdsl.backends.tvm import target as tvm_target  # noqa: E402
from resdsl.backends.tvm.lower import lower  # noqa: E402
from resdsl.backends.tvm.rules import kernel  # noqa: E402

# (op, input shapes, attrs, params): stride 1 and 2, 3x3 and 1x1, with and without the epilogue.
CONV = {"dilation": 1, "groups": 1}


def DW(channels: int, k: int) -> dict:  # noqa: N802 - reads as a case constructor
    return {"w": (channels, 1, k, k), "b": (channels,)}


CASES = [
    (
        "conv3x3",
        "conv2d",
        [("N", 16, 12, 12), "w", "b"],
        {**CONV, "stride": 1, "padding": 1},
        {"w": (32, 16, 3, 3), "b": (32,)},
    ),
    ("conv3x3_s2", "conv2d", [("N", 8, 13, 13), "w"], {**CONV, "stride": 2, "padding": 1}, {"w": (24, 8, 3, 3)}),
    ("conv1x1_s2", "conv2d", [("N", 32, 8, 8), "w"], {**CONV, "stride": 2, "padding": 0}, {"w": (64, 32, 1, 1)}),
    (
        "fused_conv_add_relu",
        "fused_conv",
        [("N", 16, 10, 10), "w", "b", ("N", 32, 10, 10)],
        {**CONV, "stride": 1, "padding": 1, "activation": "relu"},
        {"w": (32, 16, 3, 3), "b": (32,)},
    ),
    ("linear", "linear", [("N", 40), "w", "b"], {}, {"w": (48, 40), "b": (48,)}),
    ("matmul", "matmul", [("N", 6, 20), ("N", 20, 32)], {}, {}),
    ("matmul_weight", "matmul", [("N", 5, 24), "w"], {}, {"w": (24, 48)}),
    # A prime number of tokens (ViT's 197): rows and columns padded to whole tiles.
    ("matmul_prime_tokens", "matmul", [("N", 3, 17, 8), ("N", 3, 8, 19)], {}, {}),
    ("linear_prime_tokens", "linear", [("N", 17, 24), "w", "b"], {}, {"w": (32, 24), "b": (32,)}),
    # Fast exp and erf (fast_math_passes): large and negative inputs included.
    ("gelu_wide", "gelu", [("N", 17, 40)], {}, {}),
    ("softmax_wide", "softmax", [("N", 3, 19, 19)], {"axis": -1}, {}),
    # Depthwise (groups == channels: MobileNet, EfficientNet, ConvNeXt): 3x3, 5x5 stride 2, 7x7.
    ("depthwise3x3", "conv2d", [("N", 32, 14, 14), "w", "b"], {**CONV, "groups": 32, "padding": 1}, DW(32, 3)),
    (
        "depthwise5x5_s2",
        "conv2d",
        [("N", 24, 15, 15), "w", "b"],
        {**CONV, "groups": 24, "stride": 2, "padding": 2},
        DW(24, 5),
    ),
    ("depthwise7x7", "conv2d", [("N", 48, 9, 9), "w", "b"], {**CONV, "groups": 48, "padding": 3}, DW(48, 7)),
]
# The shared op cases the rules touch: grouped, dilated and rectangular convs, pooling, dense.
CASES += [
    c
    for c in op_cases()
    if c[1]
    in ("conv2d", "fused_conv", "linear", "matmul", "max_pool2d", "global_avg_pool", "gelu", "softmax", "layer_norm")
]


def _compile(graph, batch: int | None, db: str | None = None):
    target = tvm.target.Target(tvm_target.llvm_target())
    with tvm.transform.PassContext(opt_level=3):
        return tvm.compile(lower(graph, batch), target, relax_pipeline=tvm_pipeline.pipeline(target, db))


def _run(executable, graph, feeds) -> dict:
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())
    result = vm["main"](*[tvm.runtime.tensor(feeds[graph.node(i).attrs["name"]]) for i in graph.inputs])
    return {name: value.numpy() for (name, _), value in zip(graph.outputs, result)}


@pytest.mark.parametrize("batch", [2, None], ids=["batch2", "symbolic"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_scheduled_op_equals_interpreter(case, batch):
    _, op, shapes, attrs, params = case
    graph = single_op(op, shapes, attrs, params)
    feeds, want = interpret_random(graph, batch=2)
    assert_close(_run(_compile(graph, batch), graph, feeds), want)


def _scheduled(graph, batch: int = 1):
    """The module after resdsl's schedules, before TIR lowering."""
    target = tvm.target.Target(tvm_target.llvm_target())
    with target:
        passes = tvm_pipeline.fused_passes(target) + tvm_pipeline.schedule_passes(target)
        return tvm.transform.Sequential(passes)(lower(graph, batch))


def test_conv_kernel_is_parallel_vectorized_and_fused():
    """The conv+bias+residual+relu kernel: one function, a parallel tile loop, unrolled
    register tile, vectorised channels, and the epilogue inside it."""
    _, op, shapes, attrs, params = CASES[3]
    mod = _scheduled(single_op(op, shapes, attrs, params))
    kernels = [
        gv.name_hint
        for gv, f in mod.functions_items()
        if "relu" in gv.name_hint and gv.name_hint.endswith("_prepacked")
    ]
    assert len(kernels) == 1, kernels
    func = mod[kernels[0]]
    assert func.attrs["tirx.is_scheduled"]
    script = func.script()
    for loop in ("T.parallel(", "T.unroll(", "T.vectorized("):
        assert loop in script, loop
    assert '"local"' in script  # the accumulator tile is a local buffer
    # The weights were packed tile by tile at compile time: (32, 16, 3, 3) -> 1 x HWI x 32.
    (weight,) = [p for p in func.params if len(p.shape) == 5]
    assert [int(d) for d in weight.shape] == [1, 3, 3, 16, 32]
    assert "weight_prepack" not in mod["main"].script()
    # The epilogue (bias + residual + relu) runs inside the parallel tile loop, vectorised.
    tile_loop = script[script.index("T.parallel(") :]
    assert "T.Select(" in tile_loop and tile_loop.count("T.vectorized(") >= 2  # relu, NaN-propagating (nan.py)


@pytest.mark.parametrize("name", ["depthwise3x3", "depthwise5x5_s2", "depthwise7x7"])
def test_depthwise_conv_is_a_register_tiled_kernel(name):
    """Depthwise convs take the multiply-accumulate kernel: parallel tiles of output columns,
    the channels (NHWC's contiguous axis) vectorised, the bias inside the tile."""
    _, op, shapes, attrs, params = next(c for c in CASES if c[0] == name)
    mod = _scheduled(single_op(op, shapes, attrs, params))
    (func,) = [f for gv, f in mod.functions_items() if gv.name_hint.endswith("_prepacked")]
    script = func.script()
    assert func.attrs["tirx.is_scheduled"] and "group_conv2d_nhwc" in script
    for loop in ("T.parallel(", "T.unroll(", "T.vectorized("):
        assert loop in script, loop


def test_prime_rows_pad_to_a_full_tile():
    assert kernel.padded_rows(197) == 11  # 18 tiles of 11 rows: one padded row
    assert 7 <= kernel.padded_rows(17) <= kernel.MAX_ROWS


def test_prime_token_matmul_is_tiled():
    """197-token attention scores: padded, then register-tiled (not left to the scalar rule)."""
    _, op, shapes, attrs, params = next(c for c in CASES if c[0] == "matmul_prime_tokens")
    mod = _scheduled(single_op(op, shapes, attrs, params))
    (func,) = [f for gv, f in mod.functions_items() if "matmul" in gv.name_hint]
    script = func.script()
    assert "_pad" in script and "T.unroll(" in script and "T.vectorized(" in script


def test_tile_fills_the_registers():
    tile = kernel.choose_tile(14, 256, 16, 1, 256 * 256 * 9, 256 * 16 * 16)
    assert (tile.rows, tile.reg, tile.vec) == (14, 2, 16)
    tile = kernel.choose_tile(7, 512, 16, 1, 512 * 512 * 9, 512 * 9 * 9)
    assert (tile.rows, tile.reg, tile.vec) == (7, 4, 16)
    tile = kernel.choose_tile(5, 10, 8, 1, 1, 1)  # 10 channels: 2-lane vectors
    assert (tile.vec, tile.reg) == (2, 1)


def test_non_mac_functions_are_not_kernels():
    """Elementwise and pooling functions are left to the generic rule."""
    graph = single_op("max_pool2d", [("N", 8, 9, 9)], {"kernel": 3, "stride": 2, "padding": 1})
    mod = _scheduled(graph)
    for gv, func in mod.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc):
            assert kernel.schedule_kernel(func, 16) is None, gv.name_hint


# ---------------------------------------------------------------- a database replaces the rule


@resdsl.model
def block():
    x = nn.input("x", (16, 8, 8))
    y = nn.relu(nn.conv2d(x, 16, 3, padding=1, name="conv1"))
    return nn.output("y", nn.relu(nn.conv2d(y, 16, 3, padding=1, name="conv2") + x))


def test_tuned_record_replaces_the_rule(tmp_path):
    """Write a record by hand (a different but valid schedule of one kernel) and check the
    compile with --db uses it for that kernel only, with unchanged numbers."""
    from resdsl.backends.tvm.pipeline import fused_module
    from resdsl.backends.tvm.tune import extract_tasks
    from tvm.s_tir import meta_schedule as ms

    graph = run_passes(randomize(resdsl.canonical(block)), pipeline(2)).graph
    target = tvm.target.Target(tvm_target.llvm_target())
    tasks = [t for t in extract_tasks(fused_module(graph, target, 1), target) if "conv2d" in t.task_name]
    task = tasks[0]
    mod = task.dispatched[0]
    sch = tvm.s_tir.Schedule(mod["main"])  # the record: the conv block's loops fused, parallel
    conv = next(b for b in sch.get_child_blocks(sch.get_sblock("root")) if "conv2d" in sch.get(b).name_hint)
    sch.parallel(sch.get_loops(conv)[0])
    db = ms.database.JSONDatabase(work_dir=str(tmp_path))
    workload = db.commit_workload(mod)
    args = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
    db.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, [1e-6], target, args))

    def kernel(db_dir):
        target = tvm.target.Target(tvm_target.llvm_target())
        with target:
            passes = tvm_pipeline.fused_passes(target) + tvm_pipeline.schedule_passes(target, db_dir)
            scheduled = tvm.transform.Sequential(passes)(lower(graph, 1))
        return {
            gv.name_hint.removesuffix("_prepacked"): f.script()
            for gv, f in scheduled.functions_items()
            if "conv2d" in gv.name_hint and not gv.name_hint.endswith("_weight_prepack")
        }

    rules, tuned = kernel(None), kernel(str(tmp_path))
    changed = [name for name in rules if rules[name] != tuned[name]]
    assert changed == [task.task_name]
    assert "T.vectorized" in rules[task.task_name] and "T.vectorized" not in tuned[task.task_name]
    feeds, want = interpret_random(graph, batch=1)
    assert_close(_run(_compile(graph, 1, str(tmp_path)), graph, feeds), want)


def test_missing_database_is_a_user_error(tmp_path):
    with pytest.raises(resdsl.ResdslError, match="does not exist"):
        tvm_pipeline.check_db(str(tmp_path / "nope"))
    with pytest.raises(resdsl.ResdslError, match="not a MetaSchedule database"):
        tvm_pipeline.check_db(str(tmp_path))


def test_rules_keep_resnet_equal_to_interpreter():
    """A whole residual network (projection shortcuts, pooling, linear) through the rules."""
    graph = resdsl.load(example("resnet.py"), "resnet18", num_classes=10, image_size=32)
    graph = run_passes(randomize(graph), pipeline(2)).graph
    feeds, want = interpret_random(graph, batch=1)
    assert_close(_run(_compile(graph, 1), graph, feeds), want)
    assert np.isfinite(list(want.values())[0]).all()


@pytest.mark.parametrize("case", op_cases(), ids=[c[0] for c in op_cases()])
def test_every_op_case_is_scheduled(case):
    """No op falls to an unscheduled (scalar, single-threaded) kernel on llvm: every function is
    scheduled and runs parallel (but the weight repacking, which runs at compile time)."""
    _, op, shapes, attrs, params = case
    mod = _scheduled(single_op(op, shapes, attrs, params), batch=2)
    for gv, func in mod.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc):
            assert func.attrs is not None and func.attrs.get("tirx.is_scheduled"), gv.name_hint
            assert gv.name_hint.endswith("_weight_prepack") or "T.parallel(" in func.script(), gv.name_hint
