"""An imported graph as a DSL model file, for users who want to edit the network they imported.

Each node becomes one ``nn.*`` call named as the node, so the file builds the same graph: a layer's
parameters get the DSL's names (``<layer>.weight``, ``.bias``, ``.running_mean`` ...), and
``weights`` returns the arrays under exactly those names for the ``.safetensors`` written beside
the file. Free constants are written into the file itself.
"""

from __future__ import annotations

import numpy as np

from ..errors import ResdslError
from ..ir import CONST, Graph, Node

_UNARY = ("relu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "gelu", "identity", "silu", "global_avg_pool")
_BINARY = ("add", "sub", "mul", "div", "matmul")
_PARAM_SUFFIXES = {
    "conv2d": ("weight", "bias"),
    "conv_transpose2d": ("weight", "bias"),
    "linear": ("weight", "bias"),
    "batch_norm": ("weight", "bias", "running_mean", "running_var"),
    "layer_norm": ("weight", "bias"),
}


class _Writer:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.var: dict[int, str] = {}
        self.lines: list[str] = []
        self.weights: dict[str, np.ndarray] = {}

    def ref(self, nid: int) -> str:
        node = self.graph.node(nid)
        if nid in self.var:
            return self.var[nid]
        if node.op == "param" and self.graph.param_kind[node.attrs["name"]] == CONST:
            value = self.graph.parameters[node.attrs["name"]]
            literal = repr(float(value)) if value.ndim == 0 else f"np.array({value.tolist()!r}, np.float32)"
            self.emit(nid, f"nn.constant({literal}, name={node.name!r})")
            return self.var[nid]
        raise ResdslError(f"{node.name}: a weight used outside a layer cannot be written as DSL", node.loc)

    def emit(self, nid: int, call: str) -> None:
        self.var[nid] = f"v{len(self.var)}"
        self.lines.append(f"    {self.var[nid]} = {call}")

    def data(self, node: Node) -> list[str]:
        return [self.ref(a) for a in self.graph.args(node.id) if not self._layer_param(node, a)]

    def _layer_param(self, node: Node, a: int) -> bool:
        return node.op in _PARAM_SUFFIXES and self.graph.node(a).op == "param" and a != self.graph.args(node.id)[0]

    def layer(self, node: Node) -> str:
        params = self.graph.args(node.id)[1:]
        for suffix, p in zip(_PARAM_SUFFIXES[node.op], params):
            self.weights[f"{node.name}.{suffix}"] = self.graph.parameters[self.graph.node(p).attrs["name"]]
        x, a, n = self.ref(self.graph.args(node.id)[0]), node.attrs, node.name
        bias = len(params) > 1
        if node.op in ("conv2d", "conv_transpose2d"):
            w = self.graph.node(params[0]).shape
            out = w[0] if node.op == "conv2d" else w[1] * a["groups"]
            extra = f", output_padding={a['output_padding']}" if node.op == "conv_transpose2d" else ""
            return (
                f"nn.{node.op}({x}, {out}, {tuple(w[2:])}, stride={a['stride']}, padding={a['padding']}, "
                f"dilation={a['dilation']}, groups={a['groups']}{extra}, bias={bias}, name={n!r})"
            )
        if node.op == "linear":
            return f"nn.linear({x}, {self.graph.node(params[0]).shape[0]}, bias={bias}, name={n!r})"
        if node.op == "batch_norm":
            return f"nn.batch_norm({x}, eps={a['eps']!r}, name={n!r})"
        return f"nn.layer_norm({x}, eps={a['eps']!r}, name={n!r})"

    def call(self, node: Node) -> str:
        a, n = node.attrs, node.name
        if node.op in _PARAM_SUFFIXES:
            return self.layer(node)
        xs = self.data(node)
        if node.op in _UNARY:
            return f"nn.{node.op}({xs[0]}, name={n!r})"
        if node.op in _BINARY:
            return f"nn.{node.op}({xs[0]}, {xs[1]}, name={n!r})"
        simple = {
            "clip": lambda: f"nn.clip({xs[0]}, {a['min']!r}, {a['max']!r}, name={n!r})",
            "leaky_relu": lambda: f"nn.leaky_relu({xs[0]}, {a['negative_slope']!r}, name={n!r})",
            "elu": lambda: f"nn.elu({xs[0]}, {a['alpha']!r}, name={n!r})",
            "softmax": lambda: f"nn.softmax({xs[0]}, {a['axis']}, name={n!r})",
            "pow": lambda: f"nn.pow({xs[0]}, {a['exponent']!r}, name={n!r})",
            "flatten": lambda: f"nn.flatten({xs[0]}, {a['axis']}, name={n!r})",
            "reshape": lambda: f"nn.reshape({xs[0]}, {tuple(a['shape'])}, name={n!r})",
            "transpose": lambda: f"nn.transpose({xs[0]}, {tuple(a['perm'])}, name={n!r})",
            "pad": lambda: f"nn.pad({xs[0]}, {tuple(a['pads'])}, name={n!r})",
            "concat": lambda: f"nn.concat([{', '.join(xs)}], axis={a['axis']}, name={n!r})",
        }
        if node.op in simple:
            return simple[node.op]()
        if node.op in ("max_pool2d", "avg_pool2d"):
            extra = f", count_include_pad={a['count_include_pad']}" if node.op == "avg_pool2d" else ""
            return (
                f"nn.{node.op}({xs[0]}, {a['kernel']}, {a['stride']}, {a['padding']}, "
                f"ceil_mode={a['ceil_mode']}{extra}, name={n!r})"
            )
        if node.op == "reduce_mean":
            return f"nn.mean({xs[0]}, {tuple(a['axes'])}, {a['keepdim']}, name={n!r})"
        raise ResdslError(
            f"{node.name}: op {node.op!r} has no DSL rendering in 'resdsl import' yet",
            node.loc,
            "compile the .onnx file directly: resdsl compile model.onnx ...",
        )


def to_dsl(graph: Graph, source: str) -> tuple[str, dict[str, np.ndarray]]:
    """The model file's text and its weights by DSL name."""
    w = _Writer(graph)
    for nid in graph.inputs:
        node = graph.node(nid)
        if not isinstance(node.shape[0], str):
            raise ResdslError(f"input {node.name!r} has a fixed batch {node.shape[0]}; the DSL's batch is symbolic")
        dtype = "" if node.dtype == "float32" else f", dtype={node.dtype!r}"
        w.emit(nid, f"nn.input({node.attrs['name']!r}, {tuple(node.shape[1:])}{dtype})")
    for node in graph.compute_nodes():
        w.emit(node.id, w.call(node))
    for name, nid in graph.outputs:
        w.lines.append(f"    nn.output({name!r}, {w.ref(nid)})")
    header = [
        f'"""{graph.name}: imported by \'resdsl import\' from {source}; weights in the .safetensors beside it."""',
        "",
        "import numpy as np  # noqa: F401  (for constants)",
        "",
        "import resdsl",
        "from resdsl import nn",
        "",
        "",
        "@resdsl.model",
        f"def {graph.name}():",
    ]
    return "\n".join(header + w.lines) + "\n", w.weights
