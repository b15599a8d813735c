"""Resource guards: refuse, before allocating, a model that cannot fit in memory at the batch asked for.

Without this an absurd size (``--arg image_size=10000``) compiles and then dies inside
ONNX Runtime's or TVM's allocator with lines of library log; here it is one error
naming the largest value and the model line that made it. The estimate is the one
``resdsl show`` reports (weights plus peak live activations, ``resdsl.summary``);
runtimes need some workspace beyond it, so it is a lower bound, and ``--force`` overrides.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ResdslError
from .ir import Graph
from .shapes import concrete, fmt, numel
from .summary import peak_activation_bytes

MEMINFO = "/proc/meminfo"


@dataclass(frozen=True)
class Estimate:
    weight_bytes: int
    peak_activation_bytes: int
    batch: int

    @property
    def total(self) -> int:
        return self.weight_bytes + self.peak_activation_bytes


def estimate(graph: Graph, batch: int = 1) -> Estimate:
    """Weights (float32, as every backend stores them) and peak activations of ``graph`` at ``batch``."""
    weights = sum(4 * v.size for v in graph.parameters.values())
    return Estimate(int(weights), peak_activation_bytes(graph, batch), batch)


def available_bytes(meminfo: str = MEMINFO) -> int | None:
    """MemAvailable from ``/proc/meminfo`` (what can be allocated without swapping); None where unknown."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def gib(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale / 8:
            return f"{n / scale:.{2 if unit == 'GiB' else 1}f} {unit}"
    return f"{n:.0f} B"


def guard(graph: Graph, batch: int = 1, force: bool = False, available: int | None = None) -> Estimate:
    """Raise a ResdslError when ``graph`` at ``batch`` needs more memory than is available (unless ``force``)."""
    est = estimate(graph, batch)
    free = available if available is not None else available_bytes()
    if force or free is None or est.total <= free:
        return est
    node = max(
        (graph.node(n) for n in graph.topo_order() if graph.node(n).op != "param"),
        key=lambda n: numel(n.shape, batch),
    )
    raise ResdslError(
        f"model {graph.name!r} needs about {gib(est.total)} at batch {batch} (weights {gib(est.weight_bytes)}, "
        f"peak activations {gib(est.peak_activation_bytes)}; the largest value is {node.name}, "
        f"{fmt(concrete(node.shape, batch))} = {gib(4 * numel(node.shape, batch))}), "
        f"more than the {gib(free)} of memory available",
        node.loc,
        hint="lower the batch or the model's sizes (--arg), or pass --force to try anyway",
    )
