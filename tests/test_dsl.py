"""The DSL: names, scopes, initialisation, and errors that name the user's line."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from helpers import example

import resdsl
from resdsl import ResdslError, nn


def write_model(tmp_path, body: str) -> str:
    path = tmp_path / "model.py"
    path.write_text("import resdsl\nfrom resdsl import nn\n\n" + textwrap.dedent(body))
    return str(path)


def line_of(path: str, needle: str) -> int:
    for i, line in enumerate(open(path).read().splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(needle)


def test_issue_example_builds_with_scoped_names():
    graph = resdsl.load(example("tiny.py"))
    names = set(graph.parameters)
    assert {
        "layer1.0.conv1.weight",
        "layer1.0.bn1.running_mean",
        "fc.bias",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.running_var",
    } <= names
    graph.verify()
    # He-normal conv weights; batch norm at identity statistics.
    w = graph.parameters["layer1.0.conv1.weight"]
    assert abs(w.std() - np.sqrt(2 / (16 * 9))) < 0.1 * np.sqrt(2 / (16 * 9))
    assert (graph.parameters["bn1.weight"] == 1).all() and (graph.parameters["bn1.running_var"] == 1).all()


def test_add_same_tensor_twice(tmp_path):
    path = write_model(
        tmp_path,
        """
        @resdsl.model
        def double():
            x = nn.input("x", (4,))
            return nn.output("y", x + x)
    """,
    )
    g = resdsl.load(path)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert (resdsl.interpret(g, {"x": x})["y"] == 2 * x).all()


@pytest.mark.parametrize(
    "body,needle,message",
    [
        (
            """
        @resdsl.model
        def m():
            x = nn.input("x", (16,))
            return nn.output("y", nn.conv2d(x, 8, 3))
     """,
            "nn.conv2d(x, 8, 3)",
            "expects an NCHW input, got shape (N, 16)",
        ),
        (
            """
        @resdsl.model
        def m():
            x = nn.input("x", (3, 8, 8))
            return nn.output("y", nn.conv2d(x, 8, 3, strides=2))
     """,
            "strides=2",
            "unexpected keyword argument 'strides'",
        ),
        (
            """
        @resdsl.model
        def m():
            x = nn.input("x", (3, 32, 32))
            y = nn.conv2d(x, 8, 3, stride=3)
            return nn.output("y", y + x)
     """,
            "y + x",
            "but outputs 10x10",
        ),
        (
            """
        @resdsl.model
        def m():
            x = nn.input("x", (3, 8, 8))
            z = nn.input("z", (5, 8, 8))
            return nn.output("y", x + z)
     """,
            "x + z",
            "neither operand feeds the other",
        ),
        (
            """
        @resdsl.model
        def m():
            x = nn.input("x", (3, 8, 8))
            return nn.output("y", nn.conv2d(x, 8, 3, groups=2))
     """,
            "groups=2",
            "must divide by groups=2",
        ),
        (
            """
        @resdsl.model
        def m():
            x = nn.input("x", (8,))
            return nn.output("y", nn.linear(nn.linear(x, 4), 4, name="a") + nn.linear(x, 5, name="a"))
     """,
            'name="a"',
            "defined twice",
        ),
    ],
)
def test_model_mistakes_name_the_line(tmp_path, body, needle, message):
    path = write_model(tmp_path, body)
    with pytest.raises(ResdslError) as info:
        resdsl.load(path)
    text = str(info.value)
    assert message in text
    assert f"{path}:{line_of(path, needle)}" in text


def test_tensor_from_another_model(tmp_path):
    path = write_model(
        tmp_path,
        """
        leaked = []

        @resdsl.model
        def first():
            x = nn.input("x", (4,))
            leaked.append(x)
            return nn.output("y", nn.relu(x))

        @resdsl.model
        def second():
            x = nn.input("x", (4,))
            return nn.output("y", x + leaked[0])
    """,
    )
    models = resdsl.load_models(path)
    resdsl.canonical(models["first"])
    with pytest.raises(ResdslError, match="belongs to another model") as info:
        resdsl.canonical(models["second"])
    assert f"{path}:{line_of(path, 'x + leaked[0]')}" in str(info.value)


def test_unknown_model_argument(tmp_path):
    with pytest.raises(ResdslError, match="it takes num_classes"):
        resdsl.load(example("tiny.py"), depth=3)


def test_dsl_outside_a_model():
    with pytest.raises(ResdslError, match="outside a model"):
        nn.relu(None)


def test_load_weights_reports_every_problem():
    graph = resdsl.load(example("tiny.py"))
    sd = graph.state_dict()
    sd.pop("fc.bias")
    sd["extra.weight"] = np.zeros(3, np.float32)
    sd["fc.weight"] = np.zeros((3, 3), np.float32)
    sd["bn1.num_batches_tracked"] = np.array(5)
    with pytest.raises(ResdslError) as info:
        graph.load_weights(sd)
    text = str(info.value)
    assert "missing: fc.bias" in text and "unexpected: extra.weight" in text and "fc.weight: expected (10, 32)" in text
    assert "num_batches_tracked" not in text


def test_load_weights_replaces_values():
    graph = resdsl.load(example("tiny.py"))
    sd = {k: np.full_like(v, 0.5) for k, v in graph.state_dict().items()}
    graph.load_weights(sd)
    assert (graph.parameters["fc.weight"] == 0.5).all()
    assert graph.num_parameters() == sum(v.size for k, v in sd.items() if "running" not in k)


def test_interpreter_rejects_bad_inputs_like_the_runners():
    g = resdsl.load(example("tiny.py"))
    x = np.zeros((2, 3, 32, 32), np.float32)
    for feeds, message in [
        ({"image": x, "extra": x}, "unknown input extra; the model takes image"),
        ({}, "missing input 'image' of shape (N, 3, 32, 32)"),
        ({"image": x[:, :, :16]}, "has shape (2, 3, 16, 32), the model expects (N, 3, 32, 32)"),
        ({"image": x.astype(np.float64)}, "has dtype float64, the model expects float32"),
    ]:
        with pytest.raises(ResdslError) as info:
            resdsl.interpret(g, feeds)
        assert message in str(info.value)
