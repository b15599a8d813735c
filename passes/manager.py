"""The pass manager: ordered passes, verification, timing, IR dumps, ``--explain``, and blame.

A pass that fails is named with every pass that ran before it ("in pass fuse_add (after
shortcuts, dce): ..."), keeping the error's source location and origins."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from resdsl.errors import ResdslError
from resdsl.ir import Graph

from .base import Pass, PassOptions, PassResult
from .spec import resolve


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
    explained: list[str] = field(default_factory=list)  # what --explain asked for, one text per pass

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
    passes: str | Sequence[str | Pass],
    options: PassOptions | None = None,
    verify: bool = False,
    dump_dir: str | None = None,
    dump_after: str | None = None,
    explain: str | None = None,
) -> PipelineResult:
    """Run passes in order on a copy of ``graph``.

    ``passes`` is a pipeline text (``"shortcuts{mode=A},dce"``) or a list of names, texts
    and pass objects; ``options`` (the legacy flags) fill the options they map to.
    ``dump_after`` is a pass name or "all": after it, ``NNN_<pass>.txt`` and ``.dot`` land in
    ``dump_dir``. ``explain`` names a pass or rule whose refusals go to ``explained``.
    """
    pipeline = resolve(passes, options)
    names = [p.name for p in pipeline]
    if dump_after and dump_after != "all" and dump_after not in names:
        raise ResdslError(f"--dump-after {dump_after}: that pass is not in the pipeline ({', '.join(names)})")
    if explain is not None:
        _check_explain(explain, pipeline)
    graph = graph.copy()
    result = PipelineResult(graph, [])
    if dump_dir and dump_after:
        os.makedirs(dump_dir, exist_ok=True)
        _dump(graph, dump_dir, 0, "input")
    for i, p in enumerate(pipeline, start=1):
        before = _compute_count(graph)
        t0 = time.perf_counter()
        ran = f" (after {', '.join(r.name for r in result.records)})" if result.records else ""
        try:
            out = p.run(graph)
        except ResdslError as e:
            raise ResdslError(f"in pass {p.name}{ran}: {e.message}", e.loc, e.hint, e.origins) from e
        except Exception as e:
            raise ResdslError(f"in pass {p.name}{ran}: internal error: {type(e).__name__}: {e}") from e
        ms = (time.perf_counter() - t0) * 1e3
        if not isinstance(out, PassResult):
            raise TypeError(f"pass {p.name!r} returned {type(out).__name__}, not PassResult")
        graph = out.graph
        if verify:
            try:
                graph.verify()
            except ResdslError as e:
                raise ResdslError(
                    f"graph invalid after pass {p.name}{ran}: {e.message}", e.loc, e.hint, e.origins
                ) from e
        result.records.append(PassRecord(p.name, ms, before, _compute_count(graph), out.modified, dict(out.counts)))
        if explain is not None and out.report is not None and explain in (p.name, *(r.name for r in p.rules)):
            result.explained.append(out.report.explain(explain, None if explain == p.name else explain))
        if dump_dir and dump_after in ("all", p.name):
            _dump(graph, dump_dir, i, p.name)
    result.graph = graph
    return result


def _check_explain(explain: str, pipeline: list[Pass]) -> None:
    known = [name for p in pipeline if p.rules for name in (p.name, *(r.name for r in p.rules))]
    if explain not in known:
        raise ResdslError(
            f"--explain {explain}: no pass or rule of that name in the pipeline is written as rules",
            hint=f"use one of {', '.join(known) or '(none in this pipeline)'}",
        )


def _dump(graph: Graph, directory: str, index: int, name: str) -> None:
    stem = os.path.join(directory, f"{index:03d}_{name}")
    for ext, text in ((".txt", graph.to_text()), (".dot", graph.to_dot())):
        tmp = stem + ext + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, stem + ext)
