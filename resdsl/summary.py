"""``resdsl show``: a per-layer table of shapes, parameters and multiply-accumulates, then totals.

Everything here is computed from shapes alone (no execution), so it is instant
even for ResNet-152. MACs are counted per sample (batch 1) by each op's own rule in
its registry entry (``resdsl/ops/``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import registry
from .analysis import residual_joins
from .ir import BUFFER, WEIGHT, Graph, Node
from .shapes import fmt, numel


def macs(graph: Graph, node: Node) -> int:
    """Multiply-accumulates of ``node`` per sample, by its op's own rule (``OpDef.macs``)."""
    ins = [graph.node(a).shape for a in graph.args(node.id)]
    return registry.get(node.op).macs(node.shape, ins, node.attrs)


@dataclass
class Row:
    name: str
    op: str
    shape: str
    params: int
    macs: int
    role: str | None = None


@dataclass
class Summary:
    model: str
    rows: list[Row]
    parameters: int
    buffers: int
    macs: int
    activation_bytes: int  # every intermediate kept, as training would
    peak_activation_bytes: int  # live values at the worst point of one inference in topological order
    residual_connections: int
    projected_connections: int

    def as_dict(self) -> dict:
        return asdict(self)


def peak_activation_bytes(graph: Graph, batch: int = 1) -> int:
    """Live float32 values at the worst point of one inference at ``batch``, in topological order:
    what ``show`` reports and what the resource guard (``resdsl.resources``) checks."""
    order = [n for n in graph.topo_order() if graph.node(n).op != "param"]
    remaining = {n: graph.num_uses(n) for n in order}
    live = peak = 0
    for nid in order:
        live += 4 * numel(graph.node(nid).shape, batch)
        peak = max(peak, live)
        for a in graph.args(nid):
            if a in remaining:
                remaining[a] -= 1
                if remaining[a] == 0 and not graph.output_uses(a):
                    live -= 4 * numel(graph.node(a).shape, batch)
    return peak


def summarize(graph: Graph, canonical: Graph | None = None) -> Summary:
    """Table and totals of ``graph``; residual connections are counted in ``canonical`` (-O0),
    where every one is still an add, whatever later passes fused."""
    rows = []
    seen: set[str] = set()
    total_macs = 0
    for node in graph.compute_nodes():
        params = 0
        for a in graph.args(node.id):
            arg = graph.node(a)
            if arg.op == "param" and arg.attrs["name"] not in seen:
                seen.add(arg.attrs["name"])
                if graph.param_kind[arg.attrs["name"]] == WEIGHT:
                    params += graph.parameters[arg.attrs["name"]].size
        m = macs(graph, node)
        total_macs += m
        rows.append(Row(node.name, node.op, fmt(node.shape), int(params), int(m), node.role))
    joins = residual_joins(canonical if canonical is not None else graph)
    return Summary(
        model=graph.name,
        rows=rows,
        parameters=graph.num_parameters(),
        buffers=int(sum(v.size for k, v in graph.parameters.items() if graph.param_kind[k] == BUFFER)),
        macs=int(total_macs),
        activation_bytes=int(sum(4 * numel(n.shape) for n in graph.compute_nodes())),
        peak_activation_bytes=peak_activation_bytes(graph),
        residual_connections=len(joins),
        projected_connections=sum(j.projected for j in joins),
    )


def group_rows(rows: list[Row], depth: int) -> list[Row]:
    """Aggregate rows by the first ``depth`` components of their names (``layer1.0`` at depth 2)."""
    out: dict[str, Row] = {}
    for r in rows:
        key = ".".join(r.name.split(".")[:depth])
        if key not in out:
            out[key] = Row(key, r.op, r.shape, 0, 0)
        g = out[key]
        g.op = g.op if g.op == r.op else "block"
        g.shape = r.shape  # the group's last output
        g.params += r.params
        g.macs += r.macs
    return list(out.values())


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} "


def format_summary(s: Summary, depth: int | None = None) -> str:
    rows = group_rows(s.rows, depth) if depth else s.rows
    header = ("name", "op", "output shape", "params", "MACs")
    table = [header] + [
        (r.name + (f" [{r.role}]" if r.role else ""), r.op, r.shape, f"{r.params:,}", f"{r.macs:,}") for r in rows
    ]
    widths = [max(len(t[i]) for t in table) for i in range(5)]
    lines = []
    for i, t in enumerate(table):
        lines.append(
            f"{t[0]:<{widths[0]}}  {t[1]:<{widths[1]}}  {t[2]:<{widths[2]}}  {t[3]:>{widths[3]}}  {t[4]:>{widths[4]}}"
        )
        if i == 0:
            lines.append("-" * len(lines[0]))
    lines.append("-" * len(lines[0]))
    lines.append(f"parameters:            {s.parameters:,} trainable (+ {s.buffers:,} buffer values)")
    lines.append(f"MACs per sample:       {s.macs:,} ({_si(s.macs)}MAC)")
    lines.append(f"activations (batch 1): {_si(s.activation_bytes)}B in all, {_si(s.peak_activation_bytes)}B peak")
    lines.append(f"residual connections:  {s.residual_connections} ({s.projected_connections} with projections)")
    return "\n".join(lines)
