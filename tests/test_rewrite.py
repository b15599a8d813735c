"""The rewrite mechanism (passes/rewrite.py), pass options as pipeline text, ``--explain``, and
errors that name the pass and the lines fused into a node."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest
from helpers import assert_close, example, randomize
from resdsl.passes import (
    Match,
    Pass,
    PassOptions,
    PassResult,
    Refusal,
    Rule,
    apply_rules,
    resolve,
    run_passes,
)
from resdsl.passes.fold_batchnorm import FOLD, FoldBatchnorm
from resdsl.passes.fuse_add import FuseAdd
from resdsl.passes.scale_residuals import ScaleResiduals
from resdsl.passes.shortcuts import Shortcuts

import resdsl
from resdsl import ResdslError, nn
from resdsl.cli import main
from resdsl.ir import Graph


@resdsl.model
def relus():
    x = nn.input("x", (6,))
    a = nn.relu(nn.relu(x, name="inner"), name="outer")  # folds to one relu
    b = nn.relu(nn.sigmoid(x), name="after_sigmoid")  # refused: its input is a sigmoid
    shared = nn.relu(x, name="shared")
    c = nn.relu(shared, name="after_shared") + shared  # refused: the inner relu has another use
    return nn.output("y", a + b + c)


def check_double_relu(graph: Graph, node) -> Match | Refusal:
    inner = graph.args(node.id)[0]
    if graph.node(inner).op != "relu":
        return Refusal(f"its input is {graph.node(inner).op}")
    if graph.num_uses(inner) != 1:
        return Refusal(f"{graph.node(inner).name} has another use")
    return Match(node.id, {"outer": node.id, "inner": inner})


def rewrite_double_relu(graph: Graph, match: Match, namer) -> int:
    graph.replace_node(match["outer"], "relu", graph.args(match["inner"]))
    return match["outer"]


DOUBLE_RELU = Rule("double_relu", "relu", check_double_relu, rewrite_double_relu)


def test_rule_records_where_it_is_defined():
    line = inspect.getsourcelines(sys.modules[__name__])[0].index(
        'DOUBLE_RELU = Rule("double_relu", "relu", check_double_relu, rewrite_double_relu)\n'
    )
    assert DOUBLE_RELU.defined_at == f"test_rewrite.py:{line + 1}"
    source = inspect.getsource(sys.modules[FOLD.check.__module__]).splitlines()
    assert source[int(FOLD.defined_at.split(":")[1]) - 1].startswith("FOLD = Rule(")


def test_driver_counts_refuses_with_reasons_inherits_and_cleans_up():
    graph = randomize(resdsl.canonical(relus), seed=1)
    feeds = resdsl.random_inputs(graph, batch=3, seed=2)
    want = resdsl.interpret(graph, feeds)
    out = graph.copy()
    report = apply_rules(out, [DOUBLE_RELU])
    assert report.counts == {"double_relu": 1} and report.modified
    refused = report.refused("double_relu")
    assert refused == {
        "after_sigmoid": "its input is sigmoid",
        "after_shared": "shared has another use",
        "shared": "its input is input",
    }  # "inner" was refused too ("its input is input"), then consumed by the rewrite of "outer"
    assert out.count_ops()["relu"] == graph.count_ops()["relu"] - 1  # the inner relu is gone
    assert "inner" not in {n.name for n in out.nodes()}
    outer = next(n for n in out.nodes() if n.name == "outer")
    assert out.args(outer.id) == out.inputs
    out.verify()
    assert_close(resdsl.interpret(out, feeds), want)
    again = apply_rules(out, [DOUBLE_RELU])
    assert not again.modified and again.counts == {"double_relu": 0}


def test_rewritten_node_inherits_the_lines_it_replaces():
    graph = randomize(resdsl.load(example("resnet.py"), "resnet18", image_size=32), seed=3)
    folded = FoldBatchnorm().run(graph.copy()).graph
    result = FuseAdd().run(folded)
    assert result.counts == {"fused_conv": 8, "sum": 0}
    fused = next(n for n in result.graph.nodes() if n.name == "layer1.0.conv2")
    add = next(n for n in graph.nodes() if n.name == "layer1.0.add")
    assert fused.op == "fused_conv" and add.loc in fused.origins


@resdsl.model
def conv_adds():
    x = nn.input("x", (4, 6, 6))
    shared = nn.conv2d(x, 4, 3, padding=1, name="shared")
    y = nn.relu(shared + x) * nn.sigmoid(shared)
    s = nn.conv2d(y, 4, 3, padding=1, name="plain") + y
    bcast = nn.conv2d(s, 4, 1, name="bcast") + nn.parameter("shift", (4, 1, 1), init="normal")
    return nn.output("y", s * bcast)


def test_fuse_add_refusal_reasons():
    graph = randomize(resdsl.canonical(conv_adds), seed=4)
    feeds = resdsl.random_inputs(graph, batch=2, seed=5)
    result = FuseAdd().run(graph.copy())
    assert result.counts == {"fused_conv": 1, "sum": 0}
    refused = result.report.refused("fuse_conv_add")
    assert refused == {
        "add": "the conv shared has another use",
        "add_2": "the add broadcasts; fused_conv needs equal shapes",
    }
    assert_close(resdsl.interpret(result.graph, feeds), resdsl.interpret(graph, feeds))
    assert not FuseAdd().run(result.graph).modified


# ---------------------------------------------------------------- pass options


def test_pipeline_text_configures_passes():
    passes = resolve("shortcuts{mode=a}, dce,fold_batchnorm,scale_residuals{scale=0.2}")
    assert passes[0] == Shortcuts(mode="A") and passes[3] == ScaleResiduals(scale="0.2")
    assert [p.name for p in passes] == ["shortcuts", "dce", "fold_batchnorm", "scale_residuals"]
    assert ",".join(p.spec() for p in passes) == "shortcuts{mode=A},dce,fold_batchnorm,scale_residuals{scale=0.2}"
    # Legacy flags fill the options they map to; the text wins over a flag.
    flags = PassOptions(shortcut="C", residual_scale="inv-depth")
    assert resolve(["shortcuts", "scale_residuals"], flags) == [Shortcuts(mode="C"), ScaleResiduals(scale="inv-depth")]
    assert resolve("shortcuts{mode=B}", flags) == [Shortcuts(mode="B")]


@pytest.mark.parametrize(
    "text,message",
    [
        ("shortcuts{mod=A}", "pass shortcuts has no option 'mod' (its options: mode)"),
        ("dce{x=1}", "pass dce has no option 'x' (dce has no options)"),
        ("shortcuts{mode=D}", "shortcuts{mode=D}: mode must be one of A, B, C"),
        ("shortcuts{mode}", "shortcuts option 'mode' is not key=value"),
        ("shortcuts{mode=A", "'{' without '}'"),
        ("nonsense", "unknown pass nonsense (known passes: "),
        ("scale_residuals{scale=deep}", "unknown residual scale 'deep'"),
    ],
)
def test_pipeline_text_errors(text, message):
    with pytest.raises(ResdslError) as e:
        resolve(text)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cli_pipeline_text_and_bad_option(tmp_path):
    out = str(tmp_path / "t.onnx")
    tiny = example("tiny.py")
    assert main(["compile", tiny, "--passes", "shortcuts{mode=A},dce,fold_batchnorm", "-o", out]) == 0
    result = subprocess.run(
        [sys.executable, "-m", "resdsl.cli", "compile", tiny, "--passes", "shortcuts{mod=A}", "-o", out],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "resdsl: error: pass shortcuts has no option 'mod' (its options: mode)"
    ]


def test_passes_command_lists_options_and_rules(capsys):
    assert main(["passes"]) == 0
    text = capsys.readouterr().out
    assert "shortcuts{mode=None}" in text and "(--shortcut)" in text
    assert "scale_residuals{scale=None}" in text and "(--residual-scale)" in text
    assert "rule fuse_conv_add on add (fuse_add.py:" in text


# ---------------------------------------------------------------- --explain


VIT = [example("transformer.py"), "--model", "vit", *("--arg", "image_size=32", "--arg", "patch=8")]
VIT += ["--arg", "depth=2", "--arg", "dim=32", "--arg", "heads=2"]


def test_explain_lists_each_add_left_with_line_and_reason(tmp_path, capsys):
    assert (
        main(["compile", *VIT, "-O2", "--target", "onnx-ort", "--explain", "fuse_add", "-o", str(tmp_path / "v.onnx")])
        == 0
    )
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "fuse_add: 6 of 6 candidates not rewritten"
    source = open(example("transformer.py")).read().splitlines()
    block_line = next(i for i, s in enumerate(source, 1) if "blocks.transformer_block(" in s)
    residual = [line for line in err[1:] if ": blocks." in line]
    assert len(residual) == 4  # two residual adds a block, two blocks
    for line in residual:
        assert line.startswith(f"  {os.path.abspath(example('transformer.py'))}:{block_line}: blocks.")
        assert "no operand is a conv2d (fuse_conv_add, fuse_add.py:" in line and "(fuse_sum, fuse_add.py:" in line
    assert any("the add broadcasts" in line for line in err[1:])  # the position embedding


def test_explain_says_when_all_were_rewritten(tmp_path, capsys):
    r18 = [example("resnet.py"), "--model", "resnet18", "--arg", "image_size=32"]
    assert main(["compile", *r18, "--explain", "fuse_conv_add", "-o", str(tmp_path / "r.onnx")]) == 0
    assert capsys.readouterr().err.strip() == "fuse_conv_add: all 8 candidates rewritten"
    with pytest.raises(ResdslError, match="--explain dce: no pass or rule"):
        run_passes(resdsl.load(example("tiny.py")), "shortcuts,dce", explain="dce")


# ---------------------------------------------------------------- errors point home


@dataclass(frozen=True)
class Boom(Pass):
    """Raises the error it is given, as a pass that found a user mistake would."""

    name: ClassVar[str] = "boom"

    def run(self, graph: Graph) -> PassResult:
        node = next(n for n in graph.nodes() if n.op == "relu")
        raise ResdslError(f"{node.name}: cannot", node.loc, "do something else")


@dataclass(frozen=True)
class Miswire(Pass):
    """A defective pass: feeds the first fused conv's residual input from a node of another shape."""

    name: ClassVar[str] = "miswire"

    def run(self, graph: Graph) -> PassResult:
        fused = next(n for n in graph.nodes() if n.op == "fused_conv")
        graph.set_input(fused.id, 3, graph.inputs[0])
        return PassResult(graph, True)


def test_error_in_a_pass_names_it_and_those_before_it():
    graph = resdsl.load(example("tiny.py"))
    with pytest.raises(ResdslError) as e:
        run_passes(graph, ["shortcuts", "dce", Boom()])
    relu = next(n for n in graph.nodes() if n.op == "relu")
    assert e.value.loc == relu.loc and e.value.hint == "do something else"
    assert e.value.message == f"in pass boom (after shortcuts, dce): {relu.name}: cannot"


def test_invalid_fused_node_lists_its_origins():
    graph = resdsl.load(example("tiny.py"))
    with pytest.raises(ResdslError) as e:
        run_passes(graph, ["shortcuts", "fold_batchnorm", "fuse_add", Miswire()], verify=True)
    err = e.value
    assert err.message.startswith("graph invalid after pass miswire (after shortcuts, fold_batchnorm, fuse_add): ")
    assert err.origins  # the lines of the batch norm, the add and the relu, where they differ from the conv's
    assert f"(fused from {', '.join(str(o) for o in err.origins)})" in err.render()
    long = err.render_long().splitlines()
    assert long[0] == err.render() and long[1] == f"    {err.loc.line} | {err.loc.source_line()}"
    assert f"    {err.origins[0]} | {err.origins[0].source_line()}" in long


def test_cli_prints_the_line_a_pass_error_points_at(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import resdsl\nfrom resdsl import nn\n\n@resdsl.model\ndef m():\n"
        "    x = nn.input('x', (8, 4, 4))\n    return nn.output('y', nn.conv2d(x, 4, 1) + x)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "resdsl.cli", "compile", str(bad), "--shortcut", "A", "-o", str(tmp_path / "m.onnx")],
        capture_output=True,
        text=True,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 2
    assert lines[0].startswith(f"resdsl: error: {bad}:7: in pass shortcuts: ")
    assert "option A cannot shrink 8 features to 4" in lines[0]
    assert lines[1] == "    7 | return nn.output('y', nn.conv2d(x, 4, 1) + x)"
