"""Export a resdsl model as one standalone PyTorch file (``resdsl export MODEL.py --target torch``).

Why: a network designed in the DSL should train in PyTorch without being written a second
time. The file imports only torch; its ``state_dict()`` names are the canonical graph's
parameter names (batch norm statistics as buffers, ``num_batches_tracked`` included), so
``torch.save(model.state_dict(), "trained.pt")`` loads back into
``resdsl compile MODEL.py --weights trained.pt``. The canonical graph is exported -- the
-O0 form with the inserted projections and any residual scaling -- never an optimised
one: folding batch norm would leave nothing to train.
"""

from __future__ import annotations

from dataclasses import dataclass

from resdsl.atomic import atomic_write
from resdsl.driver import CompileRequest, build_graph
from resdsl.errors import ResdslError
from resdsl.ir import WEIGHT, Graph
from resdsl.shapes import fmt
from resdsl.version import __version__

from .ops import HELPERS, TORCH_OPS
from .source import Exporter, _class_name

__all__ = ["TORCH_OPS", "Exported", "export", "generate"]

SCOPE = '''
class Scope(nn.Module):
    """A scope of the resdsl model (``with nn.scope("layer1.0"):``): the layers named inside it."""

    def __init__(self, **children) -> None:
        super().__init__()
        for name, child in children.items():
            if isinstance(child, nn.Parameter):
                self.register_parameter(name, child)
            elif isinstance(child, nn.Module):
                self.add_module(name, child)
            else:
                self.register_buffer(name, child)
'''


@dataclass(frozen=True)
class Exported:
    path: str
    class_name: str
    parameters: int


def generate(graph: Graph, about: str = "") -> tuple[str, str]:
    """The exported file's text and its class name, for a canonical graph."""
    ex = Exporter(graph)
    init = ex.init_lines()
    args, body, outs = ex.forward_lines()
    cls = _class_name(graph.name)
    ins = ", ".join(f"{a}: {fmt(graph.node(i).shape)} {graph.node(i).dtype}" for a, i in zip(args, graph.inputs))
    rets = ", ".join(f"{name} {fmt(graph.node(i).shape)}" for name, i in graph.outputs)
    lines = [
        '"""' + f"{graph.name}: exported by resdsl {__version__}{about}.",
        "",
        "The canonical graph (projection shortcuts inserted, nothing folded) as a PyTorch module.",
        "Its state_dict() names are resdsl's parameter names: torch.save(model.state_dict(), PATH)",
        "loads back with `resdsl compile MODEL.py --weights PATH`. Layers start from PyTorch's default",
        "initialisation, free parameters from resdsl's. This file needs only torch.",
        '"""',
        "",
        "import torch",
        "from torch import nn",
        "from torch.nn import functional as F",
        "",
    ]
    for name in ex.helpers_all():
        lines += ["", *HELPERS[name].strip("\n").split("\n"), ""]
    if "Scope(" in "\n".join(init):
        lines += ["", *SCOPE.strip("\n").split("\n"), ""]
    lines += [
        "",
        f"class {cls}(nn.Module):",
        f'    """resdsl model {graph.name}: ({ins}) -> {"(" + rets + ")" if len(outs) > 1 else rets}."""',
        "",
        "    def __init__(self) -> None:",
        "        super().__init__()",
        *[f"        {line}" for text in init for line in text.split("\n")],
        "",
        f"    def forward(self, {', '.join(args)}):",
        *[f"        {line}" for line in body],
        f"        return {outs[0] if len(outs) == 1 else '(' + ', '.join(outs) + ')'}",
        "",
        "",
        f"Model = {cls}",
        "",
    ]
    return "\n".join(lines), cls


def export(req: CompileRequest, out: str) -> Exported:
    """Build ``req``'s model at -O0 (shortcut option and residual scaling as compile applies them) and write ``out``."""
    if not out.endswith(".py"):
        raise ResdslError(f"output {out!r} must end in .py for target torch", hint="e.g. -o model_torch.py")
    req = CompileRequest(
        path=req.path,
        model=req.model,
        arguments=req.arguments,
        level=0,
        shortcut=req.shortcut,
        residual_scale=req.residual_scale,
    )
    graph, _ = build_graph(req)
    prov = graph.meta.get("provenance", {})
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(req.arguments.items()))
    about = f" from {prov.get('model_file', req.path)} ({args})" if args else f" from {req.path}"
    text, cls = generate(graph, about)
    atomic_write(out, text)
    params = sum(v.size for k, v in graph.parameters.items() if graph.param_kind[k] == WEIGHT)
    return Exported(out, cls, int(params))
