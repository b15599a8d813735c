"""The optimisation passes: what each rewrites (counts), what it must leave alone, and that
outputs equal the reference interpreter's before and after, with random weights and
batch-norm statistics (folding default statistics would be trivially correct)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from helpers import assert_close, example, randomize
from resdsl.passes import LEVELS, PASSES, PassOptions, pipeline, run_passes
from resdsl.passes.fold_batchnorm import check as fold_check

import resdsl
from resdsl import ResdslError, nn
from resdsl.ir import Graph

# ---------------------------------------------------------------- models


@resdsl.model
def basic_net(bias: bool = False):
    """Stem, an identity-shortcut block, and a strided block whose shortcut is projected (option B)."""
    x = nn.input("x", (4, 8, 8))
    x = nn.relu(nn.batch_norm(nn.conv2d(x, 4, 3, padding=1, bias=bias, name="stem"), name="stem_bn"))
    for i, (width, stride) in enumerate(((4, 1), (8, 2))):
        with nn.scope(f"block{i}"):
            y = nn.conv2d(x, width, 3, stride=stride, padding=1, bias=bias, name="conv1")
            y = nn.relu(nn.batch_norm(y, name="bn1"))
            y = nn.conv2d(y, width, 3, padding=1, bias=bias, name="conv2")
            y = nn.batch_norm(y, name="bn2")
            x = nn.relu(y + x)
    return nn.output("y", nn.linear(nn.flatten(nn.global_avg_pool(x)), 3, name="fc"))


@resdsl.model
def unfoldable():
    """Batch norms that must stay: after a conv with a second use, after an input, after a
    rank-3 linear (axis 1 is its token axis); and one that folds into a rank-2 linear."""
    x = nn.input("x", (3, 6, 6))
    y = nn.conv2d(x, 4, 3, padding=1, name="conv")
    shared = nn.relu(nn.batch_norm(y, name="bn_shared")) + y
    t = nn.input("t", (3, 5))
    tokens = nn.batch_norm(nn.linear(t, 4, name="tok"), name="bn_tokens")
    v = nn.input("v", (6,))
    dense = nn.batch_norm(nn.linear(nn.batch_norm(v, name="bn_input"), 5, name="fc"), name="bn_fc")
    nn.output("shared", shared)
    nn.output("tokens", tokens)
    return nn.output("dense", dense)


@resdsl.model
def no_ops():
    x = nn.input("x", (4, 6, 6))
    y = nn.identity(nn.relu(x))
    y = nn.reshape(y, ("N", 4, 6, 6))
    y = nn.transpose(y, (0, 1, 2, 3))
    y = nn.pad(y, (0,) * 8)
    y = nn.avg_pool2d(y, 1, stride=1)
    y = nn.max_pool2d(y, 1)
    y = nn.flatten(nn.flatten(nn.conv2d(y, 2, 1, name="conv")))  # the second flatten is a no-op
    # Look-alikes that do change their input:
    z = nn.avg_pool2d(nn.pad(nn.transpose(x, (0, 1, 3, 2)), (0, 0, 1, 0, 0, 0, 0, 1)), 1, stride=2)
    nn.output("z", z)
    nn.output("w", nn.identity(x))
    return nn.output("y", y)


@resdsl.model
def dead_code():
    x = nn.input("x", (5,))
    nn.input("unused", (2,))  # a graph input stays, even unused: it is the model's signature
    nn.linear(nn.relu(x), 7, name="dead")
    return nn.output("y", nn.linear(x, 3, name="fc"))


@resdsl.model
def repeated():
    x = nn.input("x", (4, 6, 6))
    a, b = nn.sigmoid(nn.relu(x)), nn.sigmoid(nn.relu(x))  # relu and sigmoid merge: 2
    p, q = nn.global_avg_pool(x), nn.global_avg_pool(x)  # 1
    c, d = x * 2.0, x * 2.0  # distinct constant parameters: never merged
    return nn.output("y", (a - b) + (p - q) + c * d)


@resdsl.model
def conv_adds():
    x = nn.input("x", (4, 6, 6))
    shared = nn.conv2d(x, 4, 3, padding=1, name="shared")  # a second use: not fused
    y = nn.relu(shared + x) * nn.sigmoid(shared)
    plain = nn.conv2d(y, 4, 3, padding=1, bias=False, name="plain")  # fused, no relu (add used twice)
    s = plain + y
    bcast = nn.conv2d(s, 4, 1, name="bcast") + nn.parameter("shift", (4, 1, 1), init="normal")  # broadcasts
    return nn.output("y", s * nn.relu(bcast) + s)


@resdsl.model
def add_tree():
    x = nn.input("x", (8,))
    a, b, c = (nn.linear(x, 8, name=f"fc{i}") for i in range(3))
    chain = x + a  # ((x + a) + b) + c -> sum(x, a, b, c), with the three lines as origins
    chain = chain + b
    chain = chain + c
    tree = (nn.relu(a) + nn.relu(b)) + (nn.sigmoid(c) + x)  # -> sum of four
    s = nn.relu(x) + nn.sigmoid(x)  # used twice: stays an add
    return nn.output("y", chain * s + s + tree * 0.5)


@resdsl.model
def two_blocks():
    x = nn.input("x", (6,))
    with nn.scope("b0"):
        x = x + nn.relu(nn.linear(x, 6, name="fc"))
    with nn.scope("b1"):
        x = nn.relu(nn.linear(x, 6, name="fc")) + x
    return nn.output("y", x)


# ---------------------------------------------------------------- helpers


def canonical(model, **kwargs) -> Graph:
    """Projections inserted, weights and statistics random."""
    return randomize(resdsl.canonical(model, **kwargs), seed=7)


def run_one(graph: Graph, name: str, options: PassOptions | None = None):
    """Run one pass (verified), check outputs are unchanged and a second run changes nothing."""
    feeds = resdsl.random_inputs(graph, batch=2, seed=11)
    want = resdsl.interpret(graph, feeds)
    result = run_passes(graph, [name], options, verify=True)
    assert_close(resdsl.interpret(result.graph, feeds), want)
    again = run_passes(result.graph, [name], options, verify=True).records[0]
    assert not again.modified, again.counts
    return result.graph, result.records[0]


def ops(graph: Graph) -> dict[str, int]:
    return graph.count_ops()


def named(graph: Graph, name: str):
    return next(n for n in graph.nodes() if n.name == name)


# ---------------------------------------------------------------- levels


def test_levels_build_on_each_other():
    assert LEVELS[0] == ["shortcuts"]
    assert set(LEVELS[1]) == {"shortcuts", "fold_batchnorm", "eliminate_identity", "dce"}
    assert set(LEVELS[2]) == set(LEVELS[1]) | {"cse", "fuse_add"}
    assert all(name in PASSES for level in LEVELS.values() for name in level)
    names = pipeline(2, PassOptions(residual_scale="0.2"))
    assert names[names.index("shortcuts") + 1] == "scale_residuals"


def test_passes_never_write_into_shared_arrays():
    graph = canonical(basic_net)
    before = {k: v.copy() for k, v in graph.parameters.items()}
    result = run_passes(graph, pipeline(2), verify=True).graph
    assert set(graph.parameters) == set(before)
    assert all(np.array_equal(graph.parameters[k], v) for k, v in before.items())
    assert "batch_norm" not in ops(result)


# ---------------------------------------------------------------- fold_batchnorm


@pytest.mark.parametrize("bias", [False, True])
def test_fold_batchnorm_folds_every_conv_bn(bias):
    graph = canonical(basic_net, bias=bias)
    folded, record = run_one(graph, "fold_batchnorm")
    assert record.counts == {"folded": 6, "kept": 0}  # stem, 2 x (bn1, bn2), downsample.1
    assert "batch_norm" not in ops(folded)
    assert ops(folded)["conv2d"] == ops(graph)["conv2d"] == 6
    assert record.nodes_after == record.nodes_before - 6
    # Each bias-free conv gained a bias; every statistic is gone with its node.
    assert all(len(folded.args(n.id)) == 3 for n in folded.nodes() if n.op == "conv2d")
    assert not [k for k in folded.parameters if "bn" in k or "running" in k or "downsample.1" in k]
    # The folded conv keeps its name and gains the batch norm's source line.
    conv, bn = named(folded, "block1.conv2"), named(graph, "block1.bn2")
    assert bn.loc in conv.origins


def test_fold_batchnorm_keeps_what_cannot_fold():
    graph = canonical(unfoldable)
    folded, record = run_one(graph, "fold_batchnorm")
    assert record.counts == {"folded": 1, "kept": 3}
    reasons = {n.name: fold_check(folded, n).reason for n in folded.nodes() if n.op == "batch_norm"}
    assert set(reasons) == {"bn_shared", "bn_tokens", "bn_input"}
    assert "other uses" in reasons["bn_shared"]
    assert "rank 3" in reasons["bn_tokens"]
    assert "input is input" in reasons["bn_input"]
    # The rewrite driver reports the same reasons it was given, without a second check.
    assert PASSES["fold_batchnorm"].cls().run(graph.copy()).report.refused("fold_batchnorm") == reasons


# ---------------------------------------------------------------- eliminate_identity


def test_eliminate_identity_removes_only_no_ops():
    graph = canonical(no_ops)
    out, record = run_one(graph, "eliminate_identity")
    assert record.counts["removed"] == 8
    assert record.counts["identity"] == 2 and record.counts["flatten"] == 1
    left = ops(out)
    assert left.get("identity", 0) == 0 and left.get("reshape", 0) == 0 and left.get("max_pool2d", 0) == 0
    assert left["transpose"] == left["pad"] == left["avg_pool2d"] == left["flatten"] == 1
    assert dict(out.outputs)["w"] == out.inputs[0]  # identity(x) as an output reads x itself


# ---------------------------------------------------------------- dce


def test_dce_removes_dead_nodes_and_their_parameters():
    graph = canonical(dead_code)
    out, record = run_one(graph, "dce")
    assert record.counts == {"nodes": 4, "parameters": 2}  # relu, linear and its two parameters
    assert "dead.weight" not in out.parameters and "fc.weight" in out.parameters
    assert len(out.inputs) == 2


# ---------------------------------------------------------------- cse


def test_cse_merges_repeats_but_never_parameters():
    graph = canonical(repeated)
    out, record = run_one(graph, "cse")
    assert record.counts == {"merged": 3}
    assert ops(out)["relu"] == ops(out)["sigmoid"] == ops(out)["global_avg_pool"] == 1
    assert ops(out)["param"] == ops(graph)["param"] and ops(out)["mul"] == 3


# ---------------------------------------------------------------- fuse_add


def test_fuse_add_fuses_the_branch_conv_with_add_and_relu():
    graph = run_passes(canonical(basic_net), ["fold_batchnorm"]).graph
    out, record = run_one(graph, "fuse_add")
    assert record.counts == {"fused_conv": 2, "sum": 0}
    assert "add" not in ops(out) and ops(out)["relu"] == ops(graph)["relu"] - 2
    for block, shortcut in (("block0", "relu"), ("block1", "block1.downsample.0")):
        fused = named(out, f"{block}.conv2")
        assert fused.op == "fused_conv" and fused.attrs["activation"] == "relu"
        assert out.node(out.args(fused.id)[3]).name == shortcut
        assert named(graph, f"{block}.add").loc in fused.origins
    assert named(out, "block1.downsample.0").op == "conv2d"


def test_fuse_add_refuses_shared_and_broadcast_convs():
    graph = canonical(conv_adds)
    out, record = run_one(graph, "fuse_add")
    assert record.counts == {"fused_conv": 1, "sum": 0}
    fused = [n for n in out.nodes() if n.op == "fused_conv"]
    assert [(n.name, n.attrs["activation"]) for n in fused] == [("plain", "none")]
    assert {"plain.bias"} <= set(out.parameters)  # a bias-free conv gains a zero bias
    assert not out.parameters["plain.bias"].any()
    assert named(out, "shared").op == named(out, "bcast").op == "conv2d"


def test_fuse_add_makes_sums_of_single_use_add_trees():
    graph = canonical(add_tree)
    out, record = run_one(graph, "fuse_add")
    assert record.counts == {"fused_conv": 0, "sum": 3}  # chain, tree, and the output's (p + s) + t
    sums = [n for n in out.nodes() if n.op == "sum"]
    assert sorted(len(out.args(n.id)) for n in sums) == [3, 4, 4]
    chain = next(n for n in sums if out.node(out.args(n.id)[0]).op == "input")
    assert [out.node(a).name for a in out.args(chain.id)] == ["x", "fc0", "fc1", "fc2"]
    assert ops(out)["add"] == 1 and len(chain.origins) >= 2


# ---------------------------------------------------------------- scale_residuals


def _mlp_by_hand(graph: Graph, x: np.ndarray, shortcut: float, branch: float) -> np.ndarray:
    p = {k: v.astype(np.float64) for k, v in graph.parameters.items()}
    for b in ("b0", "b1"):
        f = np.maximum(x @ p[f"{b}.fc.weight"].T + p[f"{b}.fc.bias"], 0)
        x = shortcut * x + branch * f
    return x


@pytest.mark.parametrize("scale,shortcut,branch", [("inv-depth", 0.5, 1.0), ("0.2", 1.0, 0.2)])
def test_scale_residuals_computes_the_scaled_function(scale, shortcut, branch):
    graph = canonical(two_blocks)
    options = PassOptions(residual_scale=scale)
    result = run_passes(graph, ["scale_residuals"], options, verify=True)
    assert result.records[0].counts == {"scaled": 2}
    out = result.graph
    muls = [n for n in out.nodes() if n.op == "mul"]
    assert len(muls) == 2 and all(n.role == "residual_scale" for n in muls)
    feeds = resdsl.random_inputs(out, batch=3, seed=2)
    want = _mlp_by_hand(out, feeds["x"].astype(np.float64), shortcut, branch)
    assert_close(resdsl.interpret(out, feeds), {"y": want})
    assert not run_passes(out, ["scale_residuals"], options).records[0].modified
    # Through -O2 the scaled function is kept (fused and folded as usual).
    optimised = run_passes(graph, pipeline(2, options), options, verify=True).graph
    assert_close(resdsl.interpret(optimised, feeds), {"y": want})


def test_scale_residuals_counts_projected_residuals():
    graph = canonical(basic_net)
    out = run_passes(graph, ["scale_residuals"], PassOptions(residual_scale="inv-depth"), verify=True).graph
    muls = {
        out.node(out.args(n.id)[0]).name: out.param_value(out.args(n.id)[1]).item()
        for n in out.nodes()
        if n.op == "mul"
    }
    assert muls == {"relu": 0.5, "block1.downsample.1": 0.5}  # L = 2: the projected residual counts


@pytest.mark.parametrize("bad", ["deep", "0", "-1", "nan", "inf"])
def test_scale_residuals_rejects_bad_values(bad):
    with pytest.raises(ResdslError) as e:
        run_passes(canonical(two_blocks), ["scale_residuals"], PassOptions(residual_scale=bad))
    assert "inv-depth" in str(e.value)


def test_no_scale_is_a_no_op():
    record = run_passes(canonical(two_blocks), ["scale_residuals"]).records[0]
    assert not record.modified


# ---------------------------------------------------------------- resnet50 at -O2


@pytest.fixture(scope="module")
def resnet50():
    graph = randomize(resdsl.load(example("resnet.py"), "resnet50", image_size=64), seed=1)
    feeds = resdsl.random_inputs(graph, batch=1, seed=4)
    optimised = run_passes(graph, pipeline(2), verify=True)
    return graph, optimised, feeds, resdsl.interpret(graph, feeds)


def test_resnet50_o2_counts_and_outputs(resnet50):
    graph, result, feeds, want = resnet50
    out = result.graph
    counts = ops(out)
    assert "batch_norm" not in counts and "add" not in counts
    assert counts["conv2d"] + counts["fused_conv"] == 53
    residual = [n for n in out.nodes() if n.op == "fused_conv" and len(out.args(n.id)) == 4]
    assert len(residual) == counts["fused_conv"] == 16
    assert all(n.attrs["activation"] == "relu" for n in residual)
    records = {r.name: r.counts for r in result.records}
    assert records["fold_batchnorm"] == {"folded": 53, "kept": 0}
    assert records["fuse_add"] == {"fused_conv": 16, "sum": 0}
    assert_close(resdsl.interpret(out, feeds), want)
    again = run_passes(out, pipeline(2))
    assert not any(r.modified for r in again.records)


@pytest.mark.skipif(importlib.util.find_spec("resdsl.backends.onnx.emit") is None, reason="no ONNX emitter")
@pytest.mark.parametrize("target", ["onnx", "onnx-ort"])
def test_resnet50_o2_through_onnx_runtime(resnet50, target, tmp_path):
    from resdsl.backends import emit, make_options, open_artifact
    from resdsl.backends.onnx.runner import OrtRunner

    _, result, feeds, want = resnet50
    path = str(tmp_path / f"resnet50-{target}.onnx")
    emit(result.graph, path, make_options(target))
    assert_close(open_artifact(path, "cpu").run(feeds), want)
    assert_close(OrtRunner(path, "cpu", optimize=False).run(feeds), want)  # ORT's own fusions off


def test_tiny_example_at_every_level():
    graph = randomize(resdsl.load(example("tiny.py")), seed=2)
    feeds = resdsl.random_inputs(graph, batch=2, seed=3)
    want = resdsl.interpret(graph, feeds)
    for level in LEVELS:
        out = run_passes(graph, pipeline(level), verify=True).graph
        assert_close(resdsl.interpret(out, feeds), want)
