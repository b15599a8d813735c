"""The projection-shortcut pass: options A, B and C on convolutional and dense residuals."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, randomize
from resdsl.passes import PassOptions, run_passes

import resdsl
from resdsl import ResdslError, nn


@resdsl.model
def conv_net(stride: int = 2, out: int = 8):
    x = nn.input("x", (4, 8, 8))
    with nn.scope("block"):
        y = nn.relu(nn.conv2d(x, out, 3, stride=stride, padding=1, name="conv1"))
        y = nn.conv2d(y, out, 3, padding=1, name="conv2")
        x = nn.relu(y + x)
    return nn.output("y", x)


@resdsl.model
def dense_net(width: int = 12):
    x = nn.input("x", (6,))
    with nn.scope("mlp.0"):
        y = nn.linear(nn.relu(nn.linear(x, width, name="fc1")), width, name="fc2")
        x = y + x
    with nn.scope("mlp.1"):
        x = nn.linear(nn.relu(x), width, name="fc1") + x
    return nn.output("y", x)


def ops(graph):
    return graph.count_ops()


def test_option_b_conv_projection_named_like_torchvision():
    g = resdsl.canonical(conv_net)
    g.verify()
    assert g.parameters["block.downsample.0.weight"].shape == (8, 4, 1, 1)
    assert "block.downsample.1.running_var" in g.parameters
    ds = next(n for n in g.nodes() if n.name == "block.downsample.0")
    assert ds.attrs["stride"] == (2, 2) and ds.role == "projection" and ds.loc is not None
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 4, 8, 8)).astype(np.float32)}
    out = resdsl.interpret(g, feeds)["y"]
    # y = relu(F(x) + BN(conv1x1_s2(x))) computed by hand from the parameters.
    from resdsl.ops import conv2d_ref

    p = g.parameters
    f = conv2d_ref(
        np.maximum(conv2d_ref(feeds["x"], p["block.conv1.weight"], p["block.conv1.bias"], stride=2, padding=1), 0),
        p["block.conv2.weight"],
        p["block.conv2.bias"],
        padding=1,
    )
    s = conv2d_ref(feeds["x"], p["block.downsample.0.weight"], stride=2) / np.sqrt(1 + 1e-5)
    assert resdsl.max_rel_error(out, np.maximum(f + s, 0)) < 1e-5


def test_option_b_dense_projection():
    g = resdsl.canonical(dense_net)
    assert g.parameters["mlp.0.proj.weight"].shape == (12, 6)
    assert "mlp.1.proj.weight" not in g.parameters  # shapes agree there
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    p = g.parameters
    h = np.maximum(x @ p["mlp.0.fc1.weight"].T + p["mlp.0.fc1.bias"], 0) @ p["mlp.0.fc2.weight"].T + p["mlp.0.fc2.bias"]
    h = h + x @ p["mlp.0.proj.weight"].T
    h = np.maximum(h, 0) @ p["mlp.1.fc1.weight"].T + p["mlp.1.fc1.bias"] + h
    assert resdsl.max_rel_error(resdsl.interpret(g, {"x": x})["y"], h) < 1e-5


def test_option_a_is_parameter_free_strided_and_zero_padded():
    raw = conv_net.build()
    g = run_passes(raw, ["shortcuts"], PassOptions(shortcut="A")).graph
    assert not any("downsample" in k for k in g.parameters)
    roles = [n for n in g.nodes() if n.role == "shortcut"]
    assert [n.op for n in roles] == ["avg_pool2d", "pad"]
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    shortcut = resdsl.interpret(_truncate(g, roles[-1].id), {"x": x})["y"]
    want = np.zeros((1, 8, 4, 4), np.float32)
    want[:, 2:6] = x[:, :, ::2, ::2]
    assert (shortcut == want).all()


def _truncate(graph, nid):
    g = graph.copy()
    g.outputs = [("y", nid)]
    return g


def test_option_c_projects_every_shortcut():
    raw = dense_net.build()
    result = run_passes(raw, ["shortcuts"], PassOptions(shortcut="C"), verify=True)
    assert result.records[0].counts["projections"] == 2
    assert "mlp.1.proj.weight" in result.graph.parameters
    again = run_passes(result.graph, ["shortcuts"], PassOptions(shortcut="C"))
    assert not again.records[0].modified


@pytest.mark.parametrize("mode", ["A", "B", "C"])
def test_second_run_is_unmodified(mode):
    g = run_passes(conv_net.build(), ["shortcuts"], PassOptions(shortcut=mode)).graph
    assert not run_passes(g, ["shortcuts"], PassOptions(shortcut=mode)).records[0].modified


def test_option_a_cannot_shrink():
    with pytest.raises(ResdslError, match="option A cannot shrink"):
        run_passes(conv_net.build(stride=1, out=2), ["shortcuts"], PassOptions(shortcut="A"))


def test_projection_preserves_randomised_function_through_onnx(tmp_path):
    from resdsl.backends import OnnxOptions, emit, open_artifact

    g = randomize(resdsl.canonical(conv_net))
    feeds = resdsl.random_inputs(g, 2)
    emit(g, str(tmp_path / "m.onnx"), OnnxOptions())
    assert_close(open_artifact(str(tmp_path / "m.onnx"), "cpu").run(feeds), resdsl.interpret(g, feeds))
