"""The pass manager: ordered passes, verification, timing, IR dumps, and blame on failure."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from resdsl.errors import ResdslError
from resdsl.ir import Graph


@dataclass
class PassOptions:
    """Options some passes read; the CLI fills them from flags."""

    shortcut: str | None = None  # A, B or C; None: the model's own default
    residual_scale: str | None = None  # None, "inv-depth" or a number as text


@dataclass
class PassResult:
    graph: Graph
    modified: bool
    counts: dict[str, int] = field(default_factory=dict)


PassFn = Callable[[Graph, PassOptions], PassResult]


@dataclass(frozen=True)
class PassInfo:
    name: str
    fn: PassFn
    doc: str


PASSES: dict[str, PassInfo] = {}


def register_pass(name: str) -> Callable[[PassFn], PassFn]:
    def wrap(fn: PassFn) -> PassFn:
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        PASSES[name] = PassInfo(name, fn, doc)
        return fn

    return wrap


@dataclass
class PassRecord:
    name: str
    ms: float
    nodes_before: int
    nodes_after: int
    modified: bool
    counts: dict[str, int]


@dataclass
class PipelineResult:
    graph: Graph
    records: list[PassRecord]

    def table(self) -> str:
        rows = [("pass", "ms", "nodes", "rewrote")]
        for r in self.records:
            what = ", ".join(f"{k}={v}" for k, v in r.counts.items() if v) or "-"
            rows.append((r.name, f"{r.ms:.1f}", f"{r.nodes_before} -> {r.nodes_after}", what))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}" for row in rows]
        lines.insert(1, "-" * max(len(line) for line in lines))
        return "\n".join(lines)


def _compute_count(graph: Graph) -> int:
    return sum(n for op, n in graph.count_ops().items() if op not in ("input", "param"))


def run_passes(
    graph: Graph,
    names: list[str],
    options: PassOptions | None = None,
    verify: bool = False,
    dump_dir: str | None = None,
    dump_after: str | None = None,
) -> PipelineResult:
    """Run passes in order on a copy of ``graph``.

    ``dump_after`` is a pass name or "all": after it, ``NNN_<pass>.txt`` and ``.dot`` land in ``dump_dir``.
    """
    options = options or PassOptions()
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise ResdslError(f"unknown pass {', '.join(unknown)}", hint=f"known passes: {', '.join(PASSES)}")
    if dump_after and dump_after != "all" and dump_after not in names:
        raise ResdslError(f"--dump-after {dump_after}: that pass is not in the pipeline ({', '.join(names)})")
    graph = graph.copy()
    records: list[PassRecord] = []
    if dump_dir and dump_after:
        os.makedirs(dump_dir, exist_ok=True)
        _dump(graph, dump_dir, 0, "input")
    for i, name in enumerate(names, start=1):
        before = _compute_count(graph)
        t0 = time.perf_counter()
        try:
            result = PASSES[name].fn(graph, options)
        except ResdslError:
            raise
        except Exception as e:
            ran = ", ".join(r.name for r in records) or "none"
            raise ResdslError(f"pass {name!r} failed: {type(e).__name__}: {e} (passes before it: {ran})") from e
        ms = (time.perf_counter() - t0) * 1e3
        if not isinstance(result, PassResult):
            raise TypeError(f"pass {name!r} returned {type(result).__name__}, not PassResult")
        graph = result.graph
        if verify:
            try:
                graph.verify()
            except ResdslError as e:
                ran = ", ".join(r.name for r in records) or "none"
                raise ResdslError(
                    f"graph invalid after pass {name!r} (passes before it: {ran}): {e.message}", e.loc
                ) from e
        records.append(PassRecord(name, ms, before, _compute_count(graph), result.modified, dict(result.counts)))
        if dump_dir and dump_after in ("all", name):
            _dump(graph, dump_dir, i, name)
    return PipelineResult(graph, records)


def _dump(graph: Graph, directory: str, index: int, name: str) -> None:
    stem = os.path.join(directory, f"{index:03d}_{name}")
    for ext, text in ((".txt", graph.to_text()), (".dot", graph.to_dot())):
        tmp = stem + ext + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, stem + ext)
