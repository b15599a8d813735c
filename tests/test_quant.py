"""Static int8: the QDQ ops' arithmetic, the quantize pass, ONNX Runtime's integer kernels, the CLI.

The ops are checked against ONNX's own reference implementation; an int8 artifact against the
int8 (QDQ) interpreter within one quantization step of its output; the digits network's
accuracy in float32 against int8 on held-out data.
"""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest
from helpers import example

import resdsl
from resdsl import quant
from resdsl.cli import main
from resdsl.driver import CompileRequest, build_graph
from resdsl.ops.quant import dequantize_ref, quantize_ref

CIFAR = example("cifar_resnet.py")
ARGS = {"image_size": 16}
DATA = os.path.join(os.path.dirname(__file__), "data")


def _onnx_ref(op: str, x, scale, zp, axis: int = 1):
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    inits = [numpy_helper.from_array(np.asarray(scale, np.float32), "s"), numpy_helper.from_array(zp, "z")]
    node = helper.make_node(op, ["x", "s", "z"], ["y"], axis=axis)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, None)], [], inits)
    graph.input[0].type.tensor_type.elem_type = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph.output.append(helper.make_value_info("y", helper.make_empty_tensor_value_info("y").type))
    return ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])).run(
        None, {"x": x}
    )[0]


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_quantize_rounds_half_to_even_and_saturates_as_onnx(dtype):
    scale, zp = 0.5, np.array(3 if dtype == "uint8" else -2, dtype)
    x = np.concatenate([np.arange(-9, 9, 0.25), [1e6, -1e6, 0.75, -0.75, 1.25]]).astype(np.float32)
    got = quantize_ref(x, scale=scale, zero_point=int(zp), axis=0, dtype=dtype)
    np.testing.assert_array_equal(got, _onnx_ref("QuantizeLinear", x, scale, zp, 0))
    back = dequantize_ref(got, scale=scale, zero_point=int(zp), axis=0)
    np.testing.assert_array_equal(back, _onnx_ref("DequantizeLinear", got, scale, zp, 0))


def test_per_channel_dequantize_as_onnx():
    q = np.random.default_rng(0).integers(-128, 128, (4, 3, 2)).astype(np.int8)
    scale = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    got = dequantize_ref(q, scale=tuple(scale.tolist()), zero_point=0, axis=0)
    np.testing.assert_allclose(got, _onnx_ref("DequantizeLinear", q, scale, np.zeros(4, np.int8), 0), rtol=1e-6)


def test_verify_refuses_integers_outside_dequantize():
    g = resdsl.Graph("bad")
    x = g.add_input("x", ("N", 4, 5, 5))
    w = g.add_param("w", np.ones((2, 4, 1, 1), np.int8))
    g.set_output("y", g.add_node("conv2d", [x, w]))
    with pytest.raises(resdsl.ResdslError, match="only dequantize reads them"):
        g.verify()


def _quantized(tmp_path, calib: int = 4, method: str = "minmax"):
    req = CompileRequest(CIFAR, "resnet20", ARGS)
    prepared = quant.float_graph(req)
    qparams = quant.calibrate(prepared, quant.load_calibration(prepared, None, calib), method)
    path = str(tmp_path / "m.qparams.json")
    quant.write_qparams(path, prepared, qparams, "minmax", "requant", {"level": 2, "passes": None})
    graph, _ = build_graph(req)
    return graph, quant.apply_qparams(graph, quant.read_qparams(path)), path


def test_onnx_runtime_runs_every_conv_as_qlinearconv(tmp_path):
    import onnx
    import onnxruntime as ort
    from resdsl.backends import OnnxOptions, emit

    graph, qgraph, _ = _quantized(tmp_path)
    convs = sum(n.op in ("conv2d", "fused_conv") for n in graph.nodes())
    path, optimized = str(tmp_path / "q.onnx"), str(tmp_path / "q.opt.onnx")
    emit(qgraph, path, OnnxOptions())
    so = ort.SessionOptions()
    so.optimized_model_filepath = optimized
    so.log_severity_level = 3
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in onnx.load(optimized).graph.node)
    assert ops["QLinearConv"] == convs == 19 and ops["Conv"] == 0
    assert ops["QLinearAdd"] == 9 and ops["QGemm"] == 1  # the residual joins and the classifier
    feeds = resdsl.random_inputs(qgraph, 3, seed=5)
    want = resdsl.interpret(qgraph, feeds)["logits"]
    step = quant.output_step(qgraph, "logits")
    assert np.max(np.abs(session.run(None, feeds)[0] - want)) <= step * (1 + 1e-3)


@pytest.mark.parametrize("method", quant.METHODS)
def test_quantized_graph_stays_close_to_float(tmp_path, method):
    graph, qgraph, _ = _quantized(tmp_path, calib=8, method=method)
    feeds = resdsl.random_inputs(graph, 4, seed=3)
    assert quant.sqnr_db(resdsl.interpret(graph, feeds)["logits"], resdsl.interpret(qgraph, feeds)["logits"]) > 25


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_quantize_compile_run_check(tmp_path, capsys):
    qp, art = str(tmp_path / "r.qparams.json"), str(tmp_path / "r.onnx")
    model = [CIFAR, "--model", "resnet20", "--arg", "image_size=16"]
    code, out, _ = _cli(capsys, "quantize", *model, "--calib-random", "4", "-o", qp)
    assert (
        code == 0 and "SQNR" in out and "top-1 agreement" in out and "layer3.2.conv2" in out and "output logits" in out
    )
    assert _cli(capsys, "compile", *model, "--quantize", qp, "-o", art)[0] == 0
    code, out, _ = _cli(capsys, "run", art, "--random", "--batch", "2", "--check", CIFAR)
    assert code == 0 and "int8 interpreter" in out and "OK" in out, out


def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    qp = str(tmp_path / "r.qparams.json")
    model = [CIFAR, "--model", "resnet20", "--arg", "image_size=16"]
    calib = tmp_path / "calib"
    calib.mkdir()
    out = str(tmp_path / "o.json")
    for match, content in [
        ("holds no .npy files", None),
        ("has shape", np.zeros((3, 8, 8), np.float32)),
        ("has dtype float64", np.zeros((3, 16, 16), np.float64)),
    ]:
        if content is not None:
            np.save(calib / "a.npy", content)
        code, _, err = _cli(capsys, "quantize", *model, "--calib", str(calib), "-o", out)
        assert code == 2 and err.startswith("resdsl: error:") and match in err and len(err.splitlines()) == 1
        assert not os.path.exists(out)
    assert _cli(capsys, "quantize", *model, "--calib-random", "2", "-o", qp)[0] == 0
    art = str(tmp_path / "x.onnx")
    other = [CIFAR, "--model", "resnet20", "--arg", "image_size=20", "--quantize", qp, "-o", art]
    for match, args in [("calibrated for model", other), ("not cuda", [*model, "--quantize", qp, "--target", "cuda"])]:
        code, _, err = _cli(capsys, "compile", *(args if "-o" in args else [*args, "-o", art]))
        assert code == 2 and match in err and len(err.splitlines()) == 1 and not os.path.exists(art)
    # -o r.so writes r.json: it must not replace the qparams file r.json it reads
    same = str(tmp_path / "r.json")
    with open(qp) as src, open(same, "w") as dst:
        dst.write(src.read())
    library = str(tmp_path / "r.so")
    code, _, err = _cli(capsys, "compile", *model, "--quantize", same, "--target", "llvm", "-o", library)
    assert code == 2 and "would overwrite" in err and len(err.splitlines()) == 1 and not os.path.exists(library)
    assert quant.read_qparams(same)["format"]


DIGITS, DIGITS_WEIGHTS = os.path.join(DATA, "digits.npz"), os.path.join(DATA, "digits_resnet20.safetensors")


def digits_input(x: np.ndarray) -> np.ndarray:
    """The digits' raw (n, 8, 8) 0..16 pixels as the network's (n, 3, 16, 16) input."""
    return np.repeat(((np.repeat(np.repeat(x / 16, 2, 1), 2, 2) - 0.3) / 0.4)[:, None], 3, axis=1).astype(np.float32)


@pytest.mark.skipif(
    not (os.path.exists(DIGITS) and os.path.exists(DIGITS_WEIGHTS)), reason="tests/data/digits.npz not merged yet"
)
def test_digits_int8_accuracy_within_half_a_point(tmp_path):
    """The trained digits resnet20, calibrated on the 100 calibration digits: int8 top-1 accuracy on
    the 400 held-out digits within 0.5 points of float32, in ONNX Runtime and in TVM."""
    from resdsl.backends import LlvmOptions, OnnxOptions, emit, open_artifact

    data = np.load(DIGITS)
    req = CompileRequest(CIFAR, "resnet20", {"num_classes": 10, "image_size": 16}, weights=DIGITS_WEIGHTS)
    prepared = quant.float_graph(req)
    qparams = quant.calibrate(prepared, [{"image": digits_input(data["calib_x"])}])
    path = str(tmp_path / "d.qparams.json")
    quant.write_qparams(path, prepared, qparams, "minmax", "requant", {"level": 2, "passes": None})
    graph, _ = build_graph(req)
    qgraph = quant.apply_qparams(graph, quant.read_qparams(path))
    feeds, labels = {"image": digits_input(data["test_x"])}, data["test_y"]

    def accuracy(g, options, name: str) -> float:
        out = str(tmp_path / name)
        emit(g, out, options)
        return float(np.mean(open_artifact(out, "cpu").run(feeds)["logits"].argmax(1) == labels))

    float_acc = accuracy(graph, OnnxOptions(), "f.onnx")
    assert float_acc > 0.95
    assert float_acc - accuracy(qgraph, OnnxOptions(), "q.onnx") <= 0.005
    assert float_acc - accuracy(qgraph, LlvmOptions(), "q.so") <= 0.005


def test_int8_check_allows_rounding_and_catches_errors(tmp_path, capsys):
    """``run --check`` on an int8 artifact: requantization roundings (a third of the values one step
    off, a rare one two) pass; a wrong scale, one value four steps off, or most values one step
    off fail."""
    from resdsl.commands.run import _check_quantized

    _, qgraph, _ = _quantized(tmp_path)
    feeds = resdsl.random_inputs(qgraph, 50, seed=2)
    want = resdsl.interpret(qgraph, feeds)["logits"]
    step = quant.output_step(qgraph, "logits")
    flat = np.arange(want.size).reshape(want.shape)
    rounding = want + step * (flat % 3 == 0)
    rounding.ravel()[7] -= 2 * step
    assert _check_quantized(qgraph, feeds, {"logits": rounding}) == 0
    assert "mean 0.3" in capsys.readouterr().out
    assert _check_quantized(qgraph, feeds, {"logits": want * 1.1 + 3 * step}) == 1  # a wrong scale
    far = want.copy()
    far.ravel()[3] += 4 * step
    assert _check_quantized(qgraph, feeds, {"logits": far}) == 1
    assert _check_quantized(qgraph, feeds, {"logits": want + step * (flat % 4 != 0)}) == 1
