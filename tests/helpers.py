"""Test helpers: random parameters, single-op graphs, and comparisons against the interpreter."""

from __future__ import annotations

import numpy as np

import resdsl
from resdsl.ir import BUFFER, CONST, Graph
from resdsl.numerics import TOLERANCE, max_rel_error


def randomize(graph: Graph, seed: int = 0) -> Graph:
    """Give every weight and buffer random values, so folding and fusion are really exercised."""
    rng = np.random.default_rng(seed)
    new = {}
    for name, value in graph.state_dict().items():
        if graph.param_kind[name] == CONST:
            continue
        if name.endswith("running_var"):
            new[name] = rng.uniform(0.5, 2.0, value.shape)
        elif graph.param_kind[name] == BUFFER or name.endswith(".bias"):
            new[name] = rng.normal(0, 0.3, value.shape)
        elif name.endswith(".weight") and value.ndim == 1:
            new[name] = rng.uniform(0.5, 1.5, value.shape)
        else:
            new[name] = value * rng.uniform(0.8, 1.2, value.shape)
    graph.load_weights(new, strict=False)
    return graph


def assert_close(got: dict, want: dict, tol: float = TOLERANCE) -> float:
    assert set(got) == set(want), (sorted(got), sorted(want))
    worst = 0.0
    for k in want:
        assert got[k].shape == want[k].shape, (k, got[k].shape, want[k].shape)
        err = max_rel_error(got[k], want[k])
        assert err < tol, f"{k}: max relative error {err:.3e} >= {tol:.0e}"
        worst = max(worst, err)
    return worst


def single_op(
    op: str, input_shapes: list[tuple], attrs: dict | None = None, params: dict | None = None, seed: int = 0
) -> Graph:
    """A graph computing one op: a graph input per shape in ``input_shapes`` (float32, or
    ``("int64", shape)`` for an index input), a parameter per name there (from ``params``),
    then the remaining ``params`` in order."""
    rng = np.random.default_rng(seed)
    g = Graph(f"single_{op}")
    params = dict(params or {})

    def param(name):
        value = params.pop(name)
        if isinstance(value, tuple):  # a shape: random values
            value = rng.standard_normal(value).astype(np.float32)
        return g.add_param(name, value)

    def graph_input(i, spec):
        if _is_typed(spec):
            return g.add_input(f"x{i}", spec[1], dtype=spec[0])
        return g.add_input(f"x{i}", spec)

    ids = [graph_input(i, s) if isinstance(s, tuple) else s for i, s in enumerate(input_shapes)]
    ids = [param(s) if isinstance(s, str) else s for s in ids]
    ids += [param(name) for name in list(params)]
    out = g.add_node(op, ids, attrs or {}, name="out")
    g.set_output("y", out)
    g.verify()
    return g


def _is_typed(spec: tuple) -> bool:
    """``("int64", (N, 7))``: a dtype, then a shape (a plain shape holds no tuple)."""
    return len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], tuple)


def example(name: str) -> str:
    import os

    return os.path.join(os.path.dirname(__file__), "..", "examples", name)


def interpret_random(graph: Graph, batch: int = 2, seed: int = 1) -> tuple[dict, dict]:
    feeds = resdsl.random_inputs(graph, batch, seed)
    return feeds, resdsl.interpret(graph, feeds)


# A model with an int64 index input: the artifacts record how many rows its table has.
INDEX_MODEL = """
import resdsl
from resdsl import nn


@resdsl.model
def tagger():
    ids = nn.input("ids", (7,), dtype="int64")
    h = nn.embedding(ids, 5, 16, name="embed")
    return nn.output("y", nn.linear(nn.relu(h), 4, name="head"))
"""


def index_model(tmp_path) -> str:
    path = tmp_path / "tagger.py"
    path.write_text(INDEX_MODEL)
    return str(path)
