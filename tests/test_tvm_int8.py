"""TVM int8 kernels (issue 12): the convolutions of a quantized graph run as uint8 x int8 -> int32
VNNI kernels (``backends/tvm/quant.int8_conv``, ``rules/int8``), equal to the int8 interpreter
within one quantization step, and the QDQ arithmetic stays in the NHWC layout."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import example

import resdsl
from resdsl import quant
from resdsl.driver import CompileRequest, build_graph

tvm = pytest.importorskip("tvm")

from resdsl.backends.tvm import target as tvm_target  # noqa: E402
from resdsl.backends.tvm.build import compile_graph  # noqa: E402
from resdsl.backends.tvm.lower import lower  # noqa: E402
from resdsl.backends.tvm.pipeline import fused_passes, int8_kernels, pipeline  # noqa: E402
from resdsl.backends.tvm.rules.int8 import schedule_int8  # noqa: E402

RESNET = example("resnet.py")
TDICT = tvm_target.llvm_target()
needs_vnni = pytest.mark.skipif(not tvm_target.has_vnni(TDICT), reason="this CPU has no AVX-512 VNNI")


def _quantized(model: str = "resnet18", size: int = 32, calib: int = 2):
    """A float graph and its int8 graph, calibrated on random inputs (the stem has 3 channels,
    padding and a non-zero input zero point; resnet18 has stride-2 projections and a max pool)."""
    req = CompileRequest(RESNET, model, {"image_size": size, "num_classes": 10})
    prepared = quant.float_graph(req)
    qparams = quant.calibrate(prepared, quant.load_calibration(prepared, None, calib))
    graph, _ = build_graph(req)
    from resdsl.passes.quantize import quantize_graph

    qgraph = graph.copy()
    quantize_graph(qgraph, qparams)
    return graph, qgraph


@pytest.fixture(scope="module")
def qgraph():
    return _quantized(calib=4)[1]


@pytest.fixture(scope="module")
def fused_int8(qgraph):
    return _fused(qgraph, int8=True)


def _run(executable, feeds):
    dev = tvm.cpu()
    vm = tvm.relax.VirtualMachine(executable, dev)
    out = vm["main"](*[tvm.runtime.tensor(v, dev) for v in feeds.values()])
    return out[0].numpy()


def _fused(qgraph, int8: bool):
    target = tvm.target.Target(TDICT)
    with target, tvm.transform.PassContext(opt_level=3):
        return tvm.transform.Sequential(fused_passes(target))(lower(qgraph, 1, int8=int8))


@needs_vnni
def test_every_conv_is_an_int8_vnni_kernel_equal_to_the_interpreter(qgraph, fused_int8):
    convs = sum(n.op in ("conv2d", "fused_conv") for n in qgraph.nodes())
    assert int8_kernels(qgraph, TDICT)
    mod = fused_int8
    kernels = [gv.name_hint for gv in mod.get_global_vars() if "conv2d" in gv.name_hint]
    calls = [line for line in mod["main"].script().splitlines() if "R.call_tir(fused_" in line and "conv2d" in line]
    assert len(calls) == convs == 20  # kernels of the same shape and epilogue are one function
    assert all(schedule_int8(mod[name]) is not None for name in kernels)
    # The QDQ arithmetic follows NHWC: no transposes but the input's (into the padded stem).
    transposes = [gv.name_hint for gv in mod.get_global_vars() if "transpose" in gv.name_hint]
    assert len(transposes) <= 2, transposes
    executable = compile_graph(qgraph, TDICT, batch=3)
    assert "vpdpbusd" in _llvm_asm(executable.mod)
    feeds = resdsl.random_inputs(qgraph, 3, seed=11)
    want = resdsl.interpret(qgraph, feeds)["logits"]
    step = quant.output_step(qgraph, "logits")
    got = _run(executable, feeds)
    # integer sums are exact; only requantization roundings near half steps differ (run --check's rule)
    assert np.mean(np.abs(got - want)) <= 0.5 * step and np.max(np.abs(got - want)) <= 3 * step


def _llvm_asm(module) -> str:
    if module.kind == "llvm":
        return module.inspect_source("asm")
    return "".join(_llvm_asm(m) for m in module.imports)


def test_without_vnni_the_int8_graph_runs_dequantized_float_convs(qgraph):
    """Where the target has no VNNI (here: the lowering told so), the same graph lowers to float convs
    of dequantized values. Their float32 sums sometimes round an intermediate value to the next
    step, which the layers after it carry on: the median logit agrees within a step, not all (the
    integer kernels sum exactly, as the interpreter, and agree within one)."""
    mod = _fused(qgraph, int8=False)
    kernels = [gv.name_hint for gv in mod.get_global_vars() if "conv2d" in gv.name_hint]
    assert kernels and all(schedule_int8(mod[name]) is None for name in kernels)
    feeds = resdsl.random_inputs(qgraph, 2, seed=3)
    target = tvm.target.Target(TDICT)
    with tvm.transform.PassContext(opt_level=3):
        executable = tvm.compile(lower(qgraph, 2, int8=False), target, relax_pipeline=pipeline(target))
    step = quant.output_step(qgraph, "logits")
    want = resdsl.interpret(qgraph, feeds)["logits"]
    got = _run(executable, feeds)
    assert np.median(np.abs(got - want)) <= step * (1 + 1e-3)
    assert quant.sqnr_db(want, got) > 25, quant.sqnr_db(want, got)


@needs_vnni
def test_max_pool_runs_on_the_uint8_grid(fused_int8):
    mod = fused_int8
    pools = [gv for gv in mod.get_global_vars() if "max_pool2d" in gv.name_hint]
    assert len(pools) == 1
    text = mod[pools[0]].script()
    assert text.count('"uint8"') >= 2 and '"float32"' not in text


@pytest.mark.skipif("avx_vnni" not in tvm_target.cpu_flags(), reason="this CPU cannot run AVX-VNNI code")
def test_avx_vnni_kernels_use_ymm_and_equal_the_interpreter(qgraph):
    """A library for a CPU with AVX-VNNI and no AVX-512 (``--mcpu alderlake``): the same kernels with
    8 int32 lanes and the VEX-encoded ``vpdpbusd`` on ymm registers (no zmm anywhere)."""
    tdict = tvm_target.llvm_target(mcpu="alderlake")
    assert tvm_target.vnni_lanes(tdict) == 8 and tvm_target.vnni_lanes(TDICT) in (8, 16)
    executable = compile_graph(qgraph, tdict, batch=3)
    asm = _llvm_asm(executable.mod)
    assert "vpdpbusd\t%ymm" in asm and "zmm" not in asm
    feeds = resdsl.random_inputs(qgraph, 3, seed=11)
    step = quant.output_step(qgraph, "logits")
    got, want = _run(executable, feeds), resdsl.interpret(qgraph, feeds)["logits"]
    assert np.mean(np.abs(got - want)) <= 0.5 * step and np.max(np.abs(got - want)) <= 3 * step


def test_a_cpu_without_vnni_gets_no_int8_kernels(qgraph):
    """x86-64-v3 (AVX2, no VNNI): the int8 graph lowers to float kernels on dequantized weights (the
    test above runs that lowering)."""
    tdict = tvm_target.llvm_target(mcpu="x86-64-v3")
    assert tvm_target.vnni_lanes(tdict) == 0 and not int8_kernels(qgraph, tdict)
