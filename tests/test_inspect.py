"""show, viz and analyze: numbers from shapes checked against independent arithmetic,
DOT styles present, and signal-propagation statistics equal to the values they summarise."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import resdsl
from resdsl import analysis, driver, summary, viz
from resdsl.registry import OPS

EX = os.path.join(os.path.dirname(__file__), os.pardir, "examples")
RESNET = os.path.join(EX, "resnet.py")
needs_resnet = pytest.mark.skipif(not os.path.exists(RESNET), reason="examples/resnet.py not written")


def test_every_op_has_cases_and_a_mac_count():
    for name, op in OPS.items():
        if name in ("input", "param"):
            continue
        assert op.cases, f"{name} has no test cases in its registry entry"
        assert callable(op.macs)


@needs_resnet
def test_resnet50_costs_4_1_gmacs_and_counts_its_shortcuts():
    g = resdsl.load(RESNET, "resnet50")
    s = summary.summarize(g)
    assert abs(s.macs - 4.1e9) / 4.1e9 < 0.02
    assert s.parameters == g.num_parameters() == sum(r.params for r in s.rows) == 25_557_032
    assert (s.residual_connections, s.projected_connections) == (16, 4)


def test_conv_and_linear_macs_are_products():
    g = resdsl.load(os.path.join(EX, "cifar_resnet.py"), "resnet20")
    rows = {r.name: r for r in summary.summarize(g).rows}
    assert rows["conv1"].macs == 32 * 32 * 16 * 3 * 9
    assert rows["layer2.0.conv1"].macs == 16 * 16 * 32 * 16 * 9  # the stride halves the output
    assert rows["fc"].macs == 64 * 10 and rows["fc"].params == 650
    s = summary.summarize(g)
    assert (s.residual_connections, s.projected_connections) == (9, 2)  # option A: pad + stride
    assert s.activation_bytes == sum(
        4 * int(np.prod([1 if d == "N" else d for d in n.shape])) for n in g.compute_nodes()
    )


def test_show_json_and_grouped_table(capsys):
    from resdsl.cli import main

    f = os.path.join(EX, "residual_mlp.py")
    assert main(["show", f, "--arg", "widths=(16, 32)", "--arg", "in_features=8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    g = resdsl.load(f, in_features=8, widths=(16, 32))
    assert data["parameters"] == g.num_parameters()
    assert (data["residual_connections"], data["projected_connections"]) == (4, 1)
    assert main(["show", f, "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert "stages.0" in out and "residual connections:  6 (1 with projections)" in out


def test_highway_has_no_plain_residuals():
    g = resdsl.load(os.path.join(EX, "highway.py"), depth=2)
    assert summary.summarize(g).residual_connections == 0


def test_dot_draws_identity_projection_and_fused_nodes_distinctly(tmp_path):
    from resdsl.driver import CompileRequest, build_graph

    f = os.path.join(EX, "cifar_resnet.py")
    g0, _ = build_graph(CompileRequest(f, "resnet20", shortcut="B", level=0))
    text = viz.to_dot(g0)
    assert text.count(viz.IDENTITY_EDGE) == 7 + 1  # 7 identity shortcuts, plus the legend
    assert text.count(viz.PROJECTION_EDGE) == 2
    assert text.count(viz.STYLES["projection"]) == 4 + 1  # 2 x (conv, bn), plus the legend
    blocks = viz.to_dot(g0, "blocks")
    assert blocks.count('"b_layer') >= 9 and blocks.count(viz.IDENTITY_EDGE) == 8
    g2, _ = build_graph(CompileRequest(f, "resnet20", level=2))
    if any(n.op in viz.FUSED_OPS for n in g2.nodes()):
        assert viz.STYLES["fused"] in viz.to_dot(g2).split("}", 1)[1]
    out = str(tmp_path / "g.dot")
    assert viz.write(g0, out) == out and open(out).read() == text


def test_pictures_need_graphviz(tmp_path, monkeypatch):
    g = resdsl.load(os.path.join(EX, "highway.py"), depth=1)
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    with pytest.raises(resdsl.ResdslError, match="apt-get install graphviz"):
        viz.write(g, str(tmp_path / "g.svg"))
    with pytest.raises(resdsl.ResdslError, match="write .dot"):
        viz.write(g, str(tmp_path / "g.txt"))


def small_preact():
    model = resdsl.load_models(os.path.join(EX, "preact_resnet.py"))["preact_resnet1001"]
    return model.build(blocks_per_stage=2, image_size=8)


def test_signal_statistics_are_the_stds_of_the_values():
    raw = small_preact()
    stats = driver.signal_propagation(raw, batch=2, seed=5)
    assert len(stats) == 6 and [s.projected for s in stats] == [True, False] * 3
    g = driver.canonicalize(raw)
    values = {}
    resdsl.interpret(g, resdsl.random_inputs(g, 2, 5), observe=lambda n, v: values.__setitem__(n.name, v))
    for s, join in zip(stats, analysis.residual_joins(g)):
        assert s.output_std == pytest.approx(np.std(values[s.name], dtype=np.float64), rel=1e-9)
        assert s.branch_std == pytest.approx(np.std(values[g.node(join.branch).name], dtype=np.float64), rel=1e-9)
    for prev, s in zip(stats, stats[1:]):
        if not s.projected:
            assert s.input_std == prev.output_std  # an identity shortcut carries the previous output


def test_inverse_depth_scaling_bounds_the_block_inputs():
    from resdsl.passes import PASSES

    if "scale_residuals" not in PASSES:
        pytest.skip("scale_residuals pass not registered yet")
    raw = small_preact()
    plain = driver.signal_propagation(raw)
    scaled = driver.signal_propagation(raw, "inv-depth")
    assert [s.branch_std for s in plain[:1]] == [s.branch_std for s in scaled[:1]]  # same first block
    for s in scaled:
        assert s.output_std < s.input_std / 6 + s.branch_std  # std(x/L + F) <= std(x)/L + std(F), L = 6
    assert scaled[-1].input_std < plain[-1].input_std


def test_analyze_cli(capsys):
    from resdsl.cli import main

    f = os.path.join(EX, "residual_mlp.py")
    assert main(["analyze", f, "--arg", "widths=(16,)", "--arg", "blocks_per_stage=3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert main(["analyze", os.path.join(EX, "highway.py")]) == 2  # no residual connections: a clear error
    assert "no residual connections" in capsys.readouterr().err
