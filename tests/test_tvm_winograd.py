"""Winograd F(4x4, 3x3) on the CPU (backends/tvm/winograd.py): the transforms are right, compiled
convolutions equal the reference interpreter, the rewrite fires where the rule says and only
there, and every function it produces is scheduled (the GEMM by the register-tiled Kernel rule)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, example, interpret_random, randomize, single_op
from resdsl.passes import pipeline, run_passes

import resdsl
from resdsl import nn

tvm = pytest.importorskip("tvm")

from resdsl.backends.tvm import pipeline as tvm_pipeline  # noqa: E402
from resdsl.backends.tvm import target as tvm_target  # noqa: E402
from resdsl.backends.tvm import winograd  # noqa: E402
from resdsl.backends.tvm.lower import lower  # noqa: E402
from resdsl.backends.tvm.winograd import ConvShape, use_winograd  # noqa: E402

CONV = {"dilation": 1, "groups": 1, "stride": 1, "padding": 1}


@pytest.mark.parametrize("m", [2, 4])
def test_transforms_compute_a_correlation(m):
    """Y = A^T [(G g G^T) * (B^T d B)] A is the 2-D correlation of an (m + 2)^2 tile, in float64."""
    bt, g, at = winograd.matrices(m)
    rng = np.random.default_rng(0)
    d, k = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3))
    y = at @ ((g @ k @ g.T) * (bt @ d @ bt.T)) @ at.T
    want = np.array([[(d[i : i + 3, j : j + 3] * k).sum() for j in range(m)] for i in range(m)])
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


def _compile(graph, batch: int | None, winograd: bool = True):
    target = tvm.target.Target(tvm_target.llvm_target())
    with tvm.transform.PassContext(opt_level=3):
        return tvm.compile(lower(graph, batch), target, relax_pipeline=tvm_pipeline.pipeline(target, winograd=winograd))


def _run(executable, graph, feeds) -> dict:
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())
    result = vm["main"](*[tvm.runtime.tensor(feeds[graph.node(i).attrs["name"]]) for i in graph.inputs])
    return {name: value.numpy() for (name, _), value in zip(graph.outputs, result)}


def _scheduled(graph, batch: int | None = 1, winograd: bool = True):
    """The module after resdsl's schedules, before TIR lowering."""
    target = tvm.target.Target(tvm_target.llvm_target())
    with target:
        passes = tvm_pipeline.fused_passes(target, winograd) + tvm_pipeline.schedule_passes(target)
        return tvm.transform.Sequential(passes)(lower(graph, batch))


def _winograd_calls(mod) -> int:
    """How many convolutions run as Winograd: calls of an input transform in ``main``."""
    return mod["main"].script().count("winograd_input")


# (name, input shapes, attrs, params): channels that are no multiple of 16, tiles that run past
# odd output sizes, valid (unpadded) convs, bias, and the residual + relu epilogue.
CASES = [
    ("14x14_bias_40to48", "conv2d", [("N", 40, 14, 14), "w", "b"], CONV, {"w": (48, 40, 3, 3), "b": (48,)}),
    ("7x7_no_bias", "conv2d", [("N", 32, 7, 7), "w"], CONV, {"w": (32, 32, 3, 3)}),
    ("odd_9x11_33to35", "conv2d", [("N", 33, 9, 11), "w", "b"], CONV, {"w": (35, 33, 3, 3), "b": (35,)}),
    ("valid_10x10", "conv2d", [("N", 32, 10, 10), "w"], {**CONV, "padding": 0}, {"w": (40, 32, 3, 3)}),
    (
        "residual_relu_13x13",
        "fused_conv",
        [("N", 48, 13, 13), "w", "b", ("N", 64, 13, 13)],
        {**CONV, "activation": "relu"},
        {"w": (64, 48, 3, 3), "b": (64,)},
    ),
]


@pytest.fixture(params=[4, 2], ids=["F4", "F2"])
def always_winograd(request, monkeypatch):
    """Take every 3x3 stride-1 conv with tiles of ``m``, whatever the rule would choose."""
    monkeypatch.setattr(winograd, "use_winograd", lambda shape: request.param)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_winograd_conv_equals_interpreter(case, always_winograd):
    _, op, shapes, attrs, params = case
    graph = single_op(op, shapes, attrs, params)
    assert _winograd_calls(_scheduled(graph)) == 1
    feeds, want = interpret_random(graph, batch=2)
    err = assert_close(_run(_compile(graph, 2), graph, feeds), want)
    assert err < 1e-5


def test_symbolic_batch(always_winograd):
    """One module with batch N serves batch 1 and 3."""
    _, op, shapes, attrs, params = CASES[-1]
    graph = single_op(op, shapes, attrs, params)
    assert _winograd_calls(_scheduled(graph, None)) == 1
    executable = _compile(graph, None)
    for batch in (1, 3):
        feeds, want = interpret_random(graph, batch=batch, seed=batch)
        assert_close(_run(executable, graph, feeds), want)


@resdsl.model
def mixed():
    """One conv the rule takes; stride 2, 1x1, grouped and narrow convs it must decline."""
    x = nn.input("x", (32, 28, 28))
    y = nn.relu(nn.conv2d(x, 32, 3, padding=1, name="winograd"))
    y = nn.conv2d(y, 32, 3, stride=2, padding=1, name="strided")
    y = nn.conv2d(y, 64, 1, name="pointwise")
    y = nn.conv2d(y, 64, 3, padding=1, groups=2, name="grouped")
    return nn.output("y", nn.conv2d(y, 16, 3, padding=1, name="narrow"))


def test_rule_declines_what_it_must():
    graph = run_passes(randomize(resdsl.canonical(mixed)), pipeline(2)).graph
    assert _winograd_calls(_scheduled(graph)) == 1
    assert _winograd_calls(_scheduled(graph, winograd=False)) == 0
    feeds, want = interpret_random(graph, batch=1)
    assert_close(_run(_compile(graph, 1), graph, feeds), want)


def test_rule():
    assert use_winograd(ConvShape(56, 56, 64, 64)) == 4
    assert use_winograd(ConvShape(28, 28, 128, 128)) == 4
    assert use_winograd(ConvShape(14, 14, 256, 256)) is None  # 16 tiles: no gain, 4x the weights
    assert use_winograd(ConvShape(26, 26, 64, 64)) == 4  # 49 tiles, the last ones ragged
    assert use_winograd(ConvShape(7, 7, 512, 512)) is None  # 4 tiles of 4x4: memory-bound
    assert use_winograd(ConvShape(4, 4, 512, 512)) is None
    assert use_winograd(ConvShape(56, 56, 16, 64)) is None  # too few channels


def test_every_function_is_scheduled_and_the_gemm_is_register_tiled(monkeypatch):
    """The GEMM is resdsl's register-tiled kernel with packed constant weights; the epilogue
    (bias + residual + relu) is fused into the output transform, not into the GEMM."""
    monkeypatch.setattr(winograd, "use_winograd", lambda shape: 4)  # 13x13 is below MIN_TILES
    _, op, shapes, attrs, params = CASES[-1]
    graph = single_op(op, shapes, attrs, params)
    # Pool the result: inside a network the conv's output stays NHWC (a graph output is
    # transposed back to NCHW, and that transpose would fuse into the output transform).
    graph.outputs[:] = [("y", graph.add_node("global_avg_pool", [graph.outputs[0][1]], {}, name="pool"))]
    mod = _scheduled(graph)
    funcs = {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    for name, func in funcs.items():
        assert func.attrs is not None and func.attrs.get("tirx.is_scheduled"), name
    (gemm,) = [f for name, f in funcs.items() if name.startswith("matmul") and name.endswith("_prepacked")]
    script = gemm.script()
    for loop in ("T.parallel(", "T.unroll(", "T.vectorized("):
        assert loop in script, loop
    assert '"local"' in script and "T.max(" not in script
    # U ((m + 2)^2, 48, 64) packed at compile time into (64 / width, (m + 2)^2, 48, width).
    a2 = (4 + 2) ** 2
    (weight,) = [p for p in gemm.params if [int(d) for d in p.shape][1:3] == [a2, 48]]
    assert int(weight.shape[0]) * int(weight.shape[3]) == 64 and int(weight.shape[0]) < 64
    (output,) = [name for name in funcs if "winograd_output" in name]
    assert "relu" in output and "add" in output
    assert "T.vectorized(" in funcs[output].script()
    assert "T.vectorized(" in funcs[next(n for n in funcs if n.startswith("winograd_input"))].script()


def test_resnet18_equals_interpreter():
    graph = resdsl.load(example("resnet.py"), "resnet18", num_classes=10, image_size=112)
    graph = run_passes(randomize(graph), pipeline(2)).graph
    # 112x112: the stride-1 3x3 convs at 28x28 (4, F(4, 3)); not 14x14, 7x7 and 4x4.
    mod = _scheduled(graph)
    assert _winograd_calls(mod) == 4
    for gv, func in mod.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc):
            assert func.attrs is not None and func.attrs.get("tirx.is_scheduled"), gv.name_hint
    feeds, want = interpret_random(graph, batch=1)
    err = assert_close(_run(_compile(graph, 1), graph, feeds), want)
    assert err < 1e-5
