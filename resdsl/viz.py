"""``resdsl viz``: a Graphviz picture of a model in which the residual structure stands out.

Identity shortcuts are dashed blue edges, nodes the compiler inserted for a
shortcut (role "projection" or "shortcut") are filled orange with an orange
edge into the add, and fused nodes (fused_conv, sum) are green with a double
border. ``--level blocks`` draws each residual block as one box. DOT text is
always available; SVG and PNG need Graphviz's ``dot`` program.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .analysis import Join, residual_joins
from .atomic import atomic_path, atomic_write
from .errors import ResdslError
from .ir import Graph, Node
from .residual import SHORTCUT_ROLES
from .shapes import fmt

FUSED_OPS = ("fused_conv", "sum")
IDENTITY_EDGE = 'style=dashed, color="#3182bd", fontcolor="#3182bd", label="identity"'
PROJECTION_EDGE = 'color="#e6550d", fontcolor="#e6550d", penwidth=2, label="projection"'
STYLES = {
    "projection": 'style=filled, fillcolor="#fdae6b", color="#e6550d"',
    "shortcut": 'style=filled, fillcolor="#fdd0a2", color="#e6550d"',
    "fused": 'style="filled,bold", fillcolor="#a1d99b", peripheries=2',
    "input": 'shape=ellipse, style=filled, fillcolor="#deebf7"',
    "block": 'style="rounded,filled", fillcolor="#f0f0f0"',
}


def _q(text: str) -> str:
    """Quote a DOT string; labels keep their \\n line breaks, names cannot hold quotes."""
    return '"' + text.replace('"', "'") + '"'


def _node_style(node: Node) -> str:
    if node.role in SHORTCUT_ROLES:
        return STYLES[node.role]
    if node.op in FUSED_OPS:
        return STYLES["fused"]
    if node.op == "input":
        return STYLES["input"]
    return ""


def _legend() -> list[str]:
    return [
        "  subgraph cluster_legend {",
        '    label="legend"; fontsize=10; color="#bdbdbd";',
        f'    legend_proj [label="projection (inserted)", {STYLES["projection"]}];',
        f'    legend_fused [label="fused node", {STYLES["fused"]}];',
        '    legend_a [label="x", shape=plaintext]; legend_b [label="x + F(x)", shape=plaintext];',
        f"    legend_a -> legend_b [{IDENTITY_EDGE}];",
        "  }",
    ]


def to_dot(graph: Graph, level: str = "ops") -> str:
    """The DOT text of ``graph`` at ``level`` "ops" (every node) or "blocks" (one box per residual block)."""
    if level not in ("ops", "blocks"):
        raise ResdslError(f"unknown viz level {level!r}", hint="use blocks or ops")
    joins = residual_joins(graph)
    lines = [f"digraph {_q(graph.name)} {{", "  rankdir=TB; node [shape=box, fontsize=10]; edge [fontsize=9];"]
    lines += _legend()
    if level == "ops":
        lines += _ops_body(graph, joins)
    else:
        lines += _blocks_body(graph, joins)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _ops_body(graph: Graph, joins: list[Join]) -> list[str]:
    shortcut_edges = {(j.shortcut, j.node): j.projected for j in joins}
    lines = []
    for n in graph.nodes():
        if n.op == "param":
            continue
        label = f"{n.name}\\n{n.op} {fmt(n.shape)}" + (f"\\n[{n.role}]" if n.role else "")
        style = _node_style(n)
        lines.append(f"  n{n.id} [label={_q(label)}" + (f", {style}" if style else "") + "];")
    for n in graph.nodes():
        if n.op == "param":
            continue
        for a in dict.fromkeys(graph.args(n.id)):
            if graph.node(a).op == "param":
                continue
            kind = shortcut_edges.get((a, n.id))
            attrs = "" if kind is None else f" [{PROJECTION_EDGE if kind else IDENTITY_EDGE}]"
            lines.append(f"  n{a} -> n{n.id}{attrs};")
    for name, nid in graph.outputs:
        lines.append(f"  out_{nid} [label={_q(name)}, shape=ellipse]; n{nid} -> out_{nid};")
    return lines


def _block_of(graph: Graph, joins: list[Join]) -> dict[int, str]:
    """Map every node inside a residual block's scope to that scope."""
    scopes = sorted({graph.node(j.node).scope for j in joins if graph.node(j.node).scope}, key=len, reverse=True)
    owner = {}
    for n in graph.nodes():
        for s in scopes:
            if n.name.startswith(s + "."):
                owner[n.id] = s
                break
    return owner


def _blocks_body(graph: Graph, joins: list[Join]) -> list[str]:
    owner = _block_of(graph, joins)
    key = {n.id: (_q(f"b_{owner[n.id]}") if n.id in owner else f"n{n.id}") for n in graph.nodes()}
    lines, drawn = [], set()
    members: dict[str, list[Node]] = {}
    for n in graph.nodes():
        if n.id in owner:
            members.setdefault(owner[n.id], []).append(n)
    projected = {graph.node(j.node).scope for j in joins if j.projected}
    for n in graph.nodes():
        if n.op == "param" or key[n.id] in drawn:
            continue
        drawn.add(key[n.id])
        if n.id in owner:
            scope = owner[n.id]
            inner = [m for m in members[scope] if m.op != "param"]
            fused = sum(m.op in FUSED_OPS for m in inner)
            label = f"{scope}\\n{len(inner)} ops -> {fmt(inner[-1].shape)}"
            label += "\\n+ projection" if scope in projected else "\\n+ identity"
            label += f"\\n{fused} fused" if fused else ""
            style = STYLES["block"] + (', color="#e6550d", penwidth=2' if scope in projected else "")
            style += ", peripheries=2" if fused else ""
            lines.append(f'  {key[n.id]} [label="{label}", {style}];')
        else:
            label = f"{n.name}\\n{n.op} {fmt(n.shape)}"
            style = _node_style(n)
            lines.append(f'  {key[n.id]} [label="{label}"' + (f", {style}" if style else "") + "];")
    edges = set()
    for n in graph.nodes():
        for a in graph.args(n.id):
            if graph.node(a).op != "param" and key[a] != key[n.id]:
                edges.add((key[a], key[n.id], ""))
    for j in joins:  # the shortcut enters its block from outside: draw it as its own edge
        src = j.shortcut
        block = owner.get(j.node)
        while block is not None and owner.get(src) == block and graph.args(src):
            src = graph.args(src)[0]
        if key[src] != key[j.node]:
            edges.add((key[src], key[j.node], PROJECTION_EDGE if j.projected else IDENTITY_EDGE))
    for src, dst, attrs in sorted(edges):
        lines.append(f"  {src} -> {dst}" + (f" [{attrs}]" if attrs else "") + ";")
    for name, nid in graph.outputs:
        lines.append(f"  out_{nid} [label={_q(name)}, shape=ellipse]; {key[nid]} -> out_{nid};")
    return lines


def write(graph: Graph, path: str, level: str = "ops") -> str:
    """Write ``.dot`` text, or render ``.svg``/``.png`` with Graphviz; returns the path."""
    text = to_dot(graph, level)
    ext = os.path.splitext(path)[1].lower()
    if ext in (".dot", ".gv"):
        atomic_write(path, text)
        return path
    if ext not in (".svg", ".png", ".pdf"):
        raise ResdslError(f"cannot draw {path!r}", hint="write .dot, .svg, .png or .pdf")
    dot = shutil.which("dot")
    if dot is None:
        raise ResdslError(
            f"drawing {ext} needs Graphviz's 'dot' program, which is not installed",
            hint="apt-get install graphviz (or brew install graphviz), or write a .dot file",
        )
    with atomic_path(path) as tmp:
        proc = subprocess.run([dot, f"-T{ext[1:]}", "-o", tmp], input=text.encode(), capture_output=True)
        if proc.returncode != 0:
            raise ResdslError(f"Graphviz failed on {path!r}: {proc.stderr.decode(errors='replace').strip()}")
    return path
