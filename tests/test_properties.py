"""Properties of the passes on random residual networks (hypothesis).

For every drawn network: each optimisation pass alone, and each -O level, leaves the
outputs unchanged (relative error < 1e-4 against the reference interpreter on fresh
random inputs and random weights and statistics), leaves a graph that verifies, and
reports modified=False when run again. A failing example shrinks to a small network
whose IR is printed through ``note``.
"""

from __future__ import annotations

from helpers import assert_close, randomize
from hypothesis import given, note
from resdsl.passes import LEVELS, Match, PassOptions, pipeline, run_passes
from resdsl.passes.fold_batchnorm import check as fold_check
from strategies import build, net_specs

import resdsl

OPTIMISATIONS = [name for name in LEVELS[2] if name != "shortcuts"]


def _prepare(spec):
    """(canonical graph with random weights, options, feeds, reference outputs with the requested scaling)."""
    note(repr(spec))
    options = PassOptions(shortcut=spec.shortcut, residual_scale=spec.residual_scale)
    canonical = randomize(run_passes(build(spec), ["shortcuts"], options, verify=True).graph, seed=3)
    note(canonical.to_text())
    reference = canonical
    if spec.residual_scale:
        reference = run_passes(canonical, ["scale_residuals"], options, verify=True).graph
    feeds = resdsl.random_inputs(canonical, batch=2, seed=5)
    return canonical, options, feeds, resdsl.interpret(reference, feeds)


def _check_unmodified_on_rerun(graph, names, options):
    again = run_passes(graph, names, options, verify=True)
    changed = [(r.name, r.counts) for r in again.records if r.modified]
    assert not changed, f"second run modified the graph: {changed}"


@given(net_specs())
def test_each_pass_preserves_outputs_and_is_idempotent(spec):
    canonical, options, feeds, _ = _prepare(spec)
    want = resdsl.interpret(canonical, feeds)
    for name in OPTIMISATIONS:
        result = run_passes(canonical, [name], options, verify=True)
        note(f"after {name}: {result.records[0].counts}\n{result.graph.to_text()}")
        assert_close(resdsl.interpret(result.graph, feeds), want)
        _check_unmodified_on_rerun(result.graph, [name], options)


@given(net_specs())
def test_every_level_preserves_outputs_and_is_idempotent(spec):
    canonical, options, feeds, want = _prepare(spec)
    for level in sorted(LEVELS):
        names = pipeline(level, options)
        result = run_passes(canonical, names, options, verify=True)
        note(f"-O{level}:\n{result.table()}\n{result.graph.to_text()}")
        assert_close(resdsl.interpret(result.graph, feeds), want)
        _check_unmodified_on_rerun(result.graph, names, options)
    graph = result.graph
    foldable = [n.name for n in graph.nodes() if n.op == "batch_norm" and isinstance(fold_check(graph, n), Match)]
    assert not foldable, f"-O2 left foldable batch norms: {foldable}"
