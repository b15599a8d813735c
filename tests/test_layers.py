"""The import graph of resdsl/, passes/ and backends/, imports inside functions included.

Layers, lowest first: the core (IR, registry, ops, shapes, errors, interpreter, numerics,
residual analysis, initialisers, weights, the read-only views) < the front end (DSL, blocks,
model loading) < passes and backends, which never import each other < the driver, the CLI
and its commands, serving. A module may import only from its own layer or below, and the
graph has no cycle.
"""

from __future__ import annotations

import ast
import os

import networkx as nx

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
PACKAGES = {"resdsl": "resdsl", "passes": "resdsl.passes", "backends": "resdsl.backends"}

FRONT_END = ("resdsl.nn", "resdsl.blocks", "resdsl.model", "resdsl.loader", "resdsl.onnx_import")
TOP = (
    "resdsl",
    "resdsl.driver",
    "resdsl.cli",
    "resdsl.commands",
    "resdsl.serving",
    "resdsl.torch_export",
    "resdsl.quant",
)


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer(module: str) -> int:
    if module == "resdsl" or _under(module, TOP[1:]):
        return 3
    if _under(module, ("resdsl.passes", "resdsl.backends")):
        return 2
    if _under(module, FRONT_END):
        return 1
    return 0


def modules() -> dict[str, str]:
    """Module name -> file, for every .py file of the three packages."""
    out = {}
    for folder, package in PACKAGES.items():
        base = os.path.join(ROOT, folder)
        for dirpath, _, files in os.walk(base):
            for f in files:
                if not f.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), base)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out[".".join([package, *rel])] = os.path.join(dirpath, f)
    return out


def import_graph() -> nx.DiGraph:
    mods = modules()
    g = nx.DiGraph()
    g.add_nodes_from(mods)
    for name, path in mods.items():
        is_pkg = path.endswith("__init__.py")
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = name.split(".")
                    base_parts = parts if is_pkg else parts[:-1]
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:  # `import resdsl.backends.tvm.runner` names the module itself
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != name:
                    g.add_edge(name, t)
    return g


def test_no_import_cycle():
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_imports_point_down_the_layers():
    g = import_graph()
    wrong = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})" for a, b in g.edges if layer(b) > layer(a)]
    assert not wrong, "\n".join(sorted(wrong))


def test_passes_and_backends_are_independent():
    g = import_graph()
    crossing = [
        f"{a} imports {b}"
        for a, b in g.edges
        if (a.startswith("resdsl.passes") and b.startswith("resdsl.backends"))
        or (a.startswith("resdsl.backends") and b.startswith("resdsl.passes"))
    ]
    assert not crossing, "\n".join(crossing)
