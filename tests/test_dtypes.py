"""float16 and bfloat16: the IR's dtypes, the convert_dtype policy, and every backend against the
interpreter computing in the same dtype (tolerances of ``resdsl.ops.cast.TOLERANCES``).

Why the interpreter in the same dtype: a float16 artifact differs from the float32 model by
float16's rounding (reported by ``run --check``, not asserted); from the float16 interpreter
it may differ only by where the backend rounds (fused epilogues, fast exp/erf), far less.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from helpers import assert_close, example, interpret_random, randomize, single_op
from resdsl.passes.convert_dtype import convert

import resdsl
from resdsl import cli
from resdsl.driver import CompileRequest, build_graph
from resdsl.ops.cast import TOLERANCES

SMALL = {
    "resnet18": ("resnet.py", "resnet18", {"image_size": 32}),
    "vit": ("transformer.py", "vit", {"image_size": 32, "patch": 8, "depth": 2}),
    "mlp": ("residual_mlp.py", None, {}),
}


def _graph(model: str, dtype: str, keep: str = "default") -> resdsl.Graph:
    path, name, args = SMALL[model]
    return build_graph(CompileRequest(example(path), name, dict(args), dtype=dtype, keep_float32=keep))[0]


def _args(model: str) -> list[str]:
    path, name, args = SMALL[model]
    out = [example(path)] + (["--model", name] if name else [])
    for k, v in args.items():
        out += ["--arg", f"{k}={v}"]
    return out


# ---------------------------------------------------------------- the IR and the policy


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_policy_keeps_fragile_ops_in_float32(dtype):
    graph = _graph("vit", dtype)
    graph.verify()  # float inputs of every op agree in dtype
    by_op: dict[str, set] = {}
    for node in graph.compute_nodes():
        by_op.setdefault(node.op, set()).add(node.dtype)
    assert by_op["softmax"] == {"float32"} and by_op["layer_norm"] == {"float32"}
    assert by_op["matmul"] == {dtype} and by_op["gelu"] == {dtype}
    assert {graph.node(nid).dtype for _, nid in graph.outputs} == {"float32"}  # the logits
    assert all(str(v.dtype) in (dtype, "float32") for v in graph.parameters.values())
    assert sum(str(v.dtype) == dtype for v in graph.parameters.values()) > len(graph.parameters) // 2
    assert f"cast(%image) {{dtype={dtype}}}" in graph.to_text()


def test_keep_none_converts_everything():
    graph = _graph("vit", "float16", keep="none")
    floats = {n.dtype for n in graph.compute_nodes() if n.op != "cast"}
    assert floats == {"float16"}
    assert all(str(v.dtype) == "float16" for v in graph.parameters.values())


def test_batch_norm_folds_in_float32_before_the_cast():
    """The folded weights equal the float32 fold rounded once."""
    h = _graph("resnet18", "float16")
    f = _graph("resnet18", "float32")  # -O2 folds too
    w16, w32 = h.parameters["conv1.weight"], f.parameters["conv1.weight"]
    assert w16.dtype == np.float16 and np.array_equal(w16, w32.astype(np.float16))
    assert "batch_norm" not in h.count_ops()


def test_verifier_rejects_mixed_float_dtypes():
    graph = single_op("add", [("N", 4), ("N", 4)])
    convert(graph, "float16", keep="none")
    graph.verify()
    graph.set_input(graph.outputs[0][1], 1, graph.inputs[1])  # bypass the cast: float16 + float32
    with pytest.raises(resdsl.ResdslError, match="mixes float dtypes"):
        graph.verify()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_interpreter_computes_in_the_dtype(dtype):
    """A conv in float16/bfloat16 is the float32 conv of the rounded operands, rounded once."""
    graph = randomize(single_op("conv2d", [("N", 8, 9, 9), "w", "b"], {"padding": 1}, {"w": (6, 8, 3, 3), "b": (6,)}))
    f32 = graph.copy()
    convert(graph, dtype, keep="none")
    feeds, got = interpret_random(graph)
    (value,) = got.values()
    assert str(value.dtype) == dtype
    rounded = {k: v.astype(np.float32).astype(value.dtype).astype(np.float32) for k, v in feeds.items()}
    f32.parameters = {k: v.astype(np.float32) for k, v in graph.parameters.items()}
    want = resdsl.interpret(f32, rounded)["y"].astype(value.dtype)
    assert np.array_equal(value.astype(np.float32), want.astype(np.float32))


# ---------------------------------------------------------------- ONNX


@pytest.mark.parametrize("model", list(SMALL))
def test_float16_onnx_passes_check(model, tmp_path, capsys):
    out = str(tmp_path / f"{model}.onnx")
    assert cli.main(["compile", *_args(model), "--dtype", "float16", "--target", "onnx-ort", "-o", out]) == 0
    assert cli.main(["run", out, "--random", "--batch", "2", "--check", *_args(model)[:1]]) == 0
    text = capsys.readouterr().out
    assert "in float16 (tolerance 1e-02)" in text and "against float32" in text
    import onnx

    m = onnx.load(out)
    assert {p.key: p.value for p in m.metadata_props}["resdsl.dtype"] == "float16"
    assert not any(n.op_type == "FusedConv" for n in m.graph.node)  # float32-only in ORT's CPU provider
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer)


@pytest.mark.parametrize("target", ["onnx", "onnx-ort"])
def test_bfloat16_onnx_is_refused(target, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    rc = cli.main(["compile", *_args("mlp"), "--dtype", "bfloat16", "--target", target, "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists() and len(err.splitlines()) == 1
    assert err.startswith("resdsl: error: --dtype bfloat16 cannot target") and "bfloat16 kernels" in err


# ---------------------------------------------------------------- TVM


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("model", list(SMALL))
def test_llvm_passes_check(model, dtype, tmp_path, capsys):
    pytest.importorskip("tvm")
    out = str(tmp_path / f"{model}.so")
    assert cli.main(["compile", *_args(model), "--dtype", dtype, "--target", "llvm", "-o", out]) == 0
    meta = json.load(open(out[:-3] + ".json"))
    assert meta["dtype"] == dtype and meta["provenance"]["dtype"] == dtype
    assert cli.main(["run", out, "--random", "--batch", "2", "--check", *_args(model)[:1]]) == 0
    assert f"in {dtype} (tolerance {TOLERANCES[dtype]:.0e})" in capsys.readouterr().out


MACS = [
    ("conv3x3", "conv2d", [("N", 16, 10, 10), "w", "b"], {"padding": 1}, {"w": (32, 16, 3, 3), "b": (32,)}),
    (
        "fused_conv",
        "fused_conv",
        [("N", 16, 10, 10), "w", "b", ("N", 32, 10, 10)],
        {"padding": 1, "activation": "relu"},
        {"w": (32, 16, 3, 3), "b": (32,)},
    ),
    ("linear", "linear", [("N", 17, 40), "w", "b"], {}, {"w": (48, 40), "b": (48,)}),
    ("matmul", "matmul", [("N", 3, 17, 8), ("N", 3, 8, 19)], {}, {}),
]


def _reduced(case, dtype: str) -> resdsl.Graph:
    _, op, shapes, attrs, params = case
    graph = single_op(op, shapes, attrs, params)
    convert(graph, dtype, keep="none")
    graph.verify()
    return graph


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("case", MACS, ids=[c[0] for c in MACS])
def test_llvm_kernel_rule_takes_reduced_dtypes(case, dtype):
    """The register-tile rule sees through the widening casts: the kernel is packed and tiled
    (not left to the generic rule), no function stays unscheduled, and it equals the interpreter."""
    tvm = pytest.importorskip("tvm")
    from test_tvm_schedule import _compile, _run, _scheduled

    graph = _reduced(case, dtype)
    mod = _scheduled(graph)
    funcs = {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    assert all(f.attrs and f.attrs["tirx.is_scheduled"] for f in funcs.values()), list(funcs)
    (kernel,) = [f for f in funcs.values() if "T.unroll(" in f.script()]  # the register tile
    assert "T.vectorized(" in kernel.script() and "T.parallel(" in kernel.script()
    feeds, want = interpret_random(graph, batch=2)
    assert_close(_run(_compile(graph, 2), graph, feeds), want, TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_builds_and_its_schedule_equals_interpreter(dtype, tmp_path):
    """The CUDA module builds without a GPU; the CUDA rule's schedule, bindings made serial, runs
    on the CPU and equals the interpreter in the dtype."""
    pytest.importorskip("tvm")
    from test_tvm_cuda_schedule import serial_llvm_run

    out = str(tmp_path / "r18.so")
    assert cli.main(["compile", *_args("resnet18"), "--dtype", dtype, "--target", "cuda", "-o", out]) == 0
    assert os.path.getsize(out) > 0 and json.load(open(out[:-3] + ".json"))["dtype"] == dtype
    for case in MACS:
        graph = _reduced(case, dtype)
        feeds, want = interpret_random(graph, batch=2)
        got, scheduled = serial_llvm_run(graph, 2, feeds)
        assert scheduled == 1, case[0]
        assert_close(got, want, TOLERANCES[dtype])


def test_verbose_prints_the_policy(tmp_path, capsys):
    out = str(tmp_path / "m.onnx")
    assert cli.main(["compile", *_args("mlp"), "--dtype", "float16", "-o", out, "--verbose"]) == 0
    text = capsys.readouterr().out
    assert "dtype float16: ops compute in float16, products accumulate in float32" in text
    assert "layer_norm: mean and variance statistics" in text and "convert_dtype" in text
    assert (
        cli.main(["compile", *_args("mlp"), "--dtype", "float16", "--keep-float32", "none", "-o", out, "--verbose"])
        == 0
    )
    assert "every op computes in float16 (--keep-float32 none)" in capsys.readouterr().out
