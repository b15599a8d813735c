"""Convert a float32 graph to float16 or bfloat16, keeping the numerically fragile ops in float32.

Why after batch-norm folding: the folded weights W * gamma / sqrt(var + eps) are computed in
float32 (float64 for the scales) and rounded once, instead of folding already-rounded factors.
The driver places this pass last, after every float32 rewrite.

The policy (``keep=default``; printed by ``resdsl compile --verbose``):

- float32 islands: softmax, layer and group norm (their statistics), unfolded batch norm,
  global average pooling and reduce_mean/reduce_sum (their accumulations), and every node
  whose value is a graph output (the final logits). Their parameters stay float32.
- everything else computes in the dtype; its parameters are stored in the dtype.
- graph inputs stay float32 (feeds do not change); a ``cast`` follows each float input,
  and a ``cast`` goes wherever a value crosses between a float32 island and the rest
  (one per value and dtype, shared by its users).

``keep=none`` converts every op, logits included: outputs are then in the dtype.
Integer values (indices) are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from resdsl.ir import Graph
from resdsl.ops.cast import REDUCED, is_float

from .base import Pass, PassResult, option, register_pass

# The ops that stay float32 under keep=default, and why (what --verbose prints).
FLOAT32_OPS: dict[str, str] = {
    "softmax": "exp and its normalising sum",
    "layer_norm": "mean and variance statistics",
    "group_norm": "mean and variance statistics",
    "batch_norm": "statistics (one that folding could not absorb)",
    "global_avg_pool": "accumulation over the spatial axes",
    "reduce_mean": "accumulation",
    "reduce_sum": "accumulation",
}
KEEP = ("default", "none")


def policy(dtype: str, keep: str) -> str:
    """The conversion policy as text: what ``--verbose`` prints before the pass table."""
    if keep == "none":
        return f"dtype {dtype}: every op computes in {dtype} (--keep-float32 none); inputs are cast on entry"
    lines = [f"dtype {dtype}: ops compute in {dtype}, products accumulate in float32; float32 is kept for"]
    lines += [f"  {op}: {why}" for op, why in FLOAT32_OPS.items()]
    lines.append("  the nodes producing the outputs (the logits); inputs stay float32 and are cast on entry")
    return "\n".join(lines)


@register_pass
@dataclass(frozen=True)
class ConvertDtype(Pass):
    """Cast parameters and activations to float16/bfloat16, with float32 islands (run after folding)."""

    name: ClassVar[str] = "convert_dtype"
    dtype: str = option("float16", help="the dtype to compute in", choices=REDUCED)
    keep: str = option("default", help="float32 islands: default (the policy) or none", choices=KEEP)

    def run(self, graph: Graph) -> PassResult:
        return convert(graph, self.dtype, self.keep)


def convert(graph: Graph, dtype: str, keep: str = "default") -> PassResult:
    """Rewrite ``graph`` in place; counts: parameters converted, casts inserted, ops kept float32."""
    if dtype not in REDUCED or keep not in KEEP:
        raise ValueError(f"convert_dtype: dtype {dtype!r} keep {keep!r}")
    outputs = {nid for _, nid in graph.outputs}
    want: dict[int, str] = {}  # compute node -> the dtype it computes in
    for node in graph.compute_nodes():
        if not is_float(node.dtype):
            continue
        kept = keep == "default" and (node.op in FLOAT32_OPS or node.id in outputs)
        want[node.id] = "float32" if kept else dtype
    converted = 0
    for nid in graph.topo_order():  # a parameter takes the dtype all its users want
        node = graph.node(nid)
        if node.op == "param" and is_float(node.dtype):
            users = {want.get(dst, "float32") for dst, _ in graph.uses(nid)}
            if users == {dtype} and not graph.output_uses(nid):
                name = node.attrs["name"]
                graph.set_param(name, graph.parameters[name], dtype=dtype)
                converted += 1
    casts: dict[tuple[int, str], int] = {}
    for nid in [n for n in graph.topo_order() if n in want]:  # producers first: their dtype is final
        target = want[nid]
        for index, src in enumerate(graph.args(nid)):
            have = graph.node(src).dtype
            if is_float(have) and have != target:
                key = (src, target)
                if key not in casts:
                    s = graph.node(src)
                    casts[key] = graph.add_node("cast", [src], {"dtype": target}, name=f"{s.name}/{target}", loc=s.loc)
                graph.set_input(nid, index, casts[key])
        graph.reinfer(nid)
    graph.meta["dtype"] = {"dtype": dtype, "keep_float32": keep}
    kept = sum(1 for t in want.values() if t == "float32")
    counts = {"params": converted, "casts": len(casts), "float32_ops": kept}
    return PassResult(graph, True, counts)
