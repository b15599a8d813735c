"""One mechanism for "find this pattern, replace it": rules, and the driver that applies them.

A ``Rule`` is data: a name, the op its pattern is rooted at, a ``check`` that returns a
``Match`` or a ``Refusal`` saying why the pattern does not apply, and a ``rewrite`` that
applies a match and returns the node whose value replaces the match's root. Each rule
records the file and line that defined it, so a report (``--explain``) shows which rule
decided.

``apply_rules`` owns everything else, so that no rule repeats it:

- traversal: each rule in turn visits the graph once in topological order (ties by node
  id, hence deterministic), checking each node of its op and rewriting at once, so a
  later check sees the graph as rewritten so far;
- provenance: a replacement that is one of the matched nodes inherits the source
  locations of the others (errors in fused code still point home);
- clean-up: the root's uses move to the replacement, and the matched nodes and their
  former inputs that nothing uses any more are removed (parameters, with their arrays,
  once after each rule's sweep: a dead parameter changes no check);
  shapes are re-inferred by the Graph methods a rewrite calls (``replace_node``);
- accounting: rewrites per rule, and every refusal with its reason and node, for
  ``RuleReport.explain``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from resdsl.errors import SourceLoc
from resdsl.ir import Graph, Node

from .patterns import Namer, sweep


@dataclass(frozen=True)
class Match:
    """What a check found: ``root`` is the node whose value the rewrite replaces, ``parts`` the
    pattern's named nodes (ids, or tuples of ids), all of which the rewrite consumes."""

    root: int
    parts: Mapping[str, int | tuple[int, ...]]

    def __getitem__(self, key: str):
        return self.parts[key]

    def get(self, key: str, default=None):
        return self.parts.get(key, default)

    @property
    def nodes(self) -> tuple[int, ...]:
        ids = [self.root]
        for part in self.parts.values():
            ids.extend(part if isinstance(part, tuple) else (part,))
        return tuple(dict.fromkeys(ids))


@dataclass(frozen=True)
class Refusal:
    """Why a rule's pattern does not apply at a node; tests and ``--explain`` read the reason."""

    reason: str


CheckFn = Callable[[Graph, Node], "Match | Refusal"]
RewriteFn = Callable[[Graph, Match, Namer], int]


@dataclass(frozen=True)
class Rule:
    name: str
    op: str | tuple[str, ...]
    check: CheckFn
    rewrite: RewriteFn
    defined_at: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.defined_at:
            frame = sys._getframe(2)  # the module line that wrote Rule(...)
            where = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
            object.__setattr__(self, "defined_at", where)

    def roots(self, op: str) -> bool:
        return op == self.op if isinstance(self.op, str) else op in self.op


@dataclass
class Candidate:
    """A node some rule checked: its name and line, kept after the node itself is gone."""

    name: str
    loc: SourceLoc | None
    refusals: list[tuple[str, str]] = field(default_factory=list)  # (rule, reason)


@dataclass
class RuleReport:
    """What ``apply_rules`` did: rewrites per rule, and every candidate each rule refused."""

    rules: list[Rule]
    counts: dict[str, int] = field(default_factory=dict)
    rewritten_ops: dict[str, dict[str, int]] = field(default_factory=dict)  # rule -> root op -> rewrites
    candidates: dict[str, dict[int, Candidate]] = field(default_factory=dict)  # rule -> node id -> candidate
    consumed: set[int] = field(default_factory=set)  # every node a rewrite matched

    @property
    def modified(self) -> bool:
        return any(self.counts.values())

    def refused(self, rule: str) -> dict[str, str]:
        """Node name -> reason, for the candidates of ``rule`` that no rewrite consumed."""
        return {
            c.name: reason
            for nid, c in self.candidates.get(rule, {}).items()
            if nid not in self.consumed
            for r, reason in c.refusals
            if r == rule
        }

    def explain(self, title: str, only: str | None = None) -> str:
        """Each candidate left as it was (its line, name and every rule's reason), or that none was."""
        names = [r.name for r in self.rules if only in (None, r.name)]
        merged: dict[int, Candidate] = {}
        for name in names:
            for nid, cand in self.candidates.get(name, {}).items():
                into = merged.setdefault(nid, Candidate(cand.name, cand.loc))
                into.refusals.extend(cand.refusals)
        left = {nid: c for nid, c in merged.items() if nid not in self.consumed}
        if not merged:
            return f"{title}: no candidates"
        if not left:
            return f"{title}: all {len(merged)} candidates rewritten"
        where = {r.name: r.defined_at for r in self.rules}
        lines = [f"{title}: {len(left)} of {len(merged)} candidates not rewritten"]
        for cand in left.values():
            reasons = "; ".join(f"{reason} ({rule}, {where[rule]})" for rule, reason in cand.refusals)
            lines.append(f"  {cand.loc or '<unknown>'}: {cand.name}: {reasons}")
        return "\n".join(lines)


def apply_rules(graph: Graph, rules: list[Rule], namer: Namer | None = None) -> RuleReport:
    """Apply each rule over the whole graph in turn (see the module docstring); returns the report."""
    report = RuleReport(list(rules))
    namer = namer or Namer(graph)
    for rule in rules:
        count = report.counts.setdefault(rule.name, 0)
        seen = report.candidates.setdefault(rule.name, {})
        by_op = report.rewritten_ops.setdefault(rule.name, {})
        params: list[int] = []  # parameters a rewrite may have left unused: removed once, after the sweep
        for nid in graph.topo_order():
            if nid not in graph or not rule.roots(graph.node(nid).op):
                continue
            node = graph.node(nid)
            cand = seen.setdefault(nid, Candidate(node.name, node.loc))
            found = rule.check(graph, node)
            if isinstance(found, Refusal):
                cand.refusals.append((rule.name, found.reason))
                continue
            params += _apply(graph, rule, found, namer)
            report.consumed.update(found.nodes)
            count += 1
            by_op[node.op] = by_op.get(node.op, 0) + 1
        sweep(graph, params)
        report.counts[rule.name] = count
    return report


def _apply(graph: Graph, rule: Rule, match: Match, namer: Namer) -> list[int]:
    """Rewrite one match, move the root's uses, and remove the compute nodes it left dead.

    Returns the parameter nodes it may have left unused: removing a parameter costs a scan
    of the graph, so the driver removes them all at once after the rule's sweep.
    """
    matched = match.nodes
    inputs = [a for nid in matched for a in graph.args(nid)]
    new = rule.rewrite(graph, match, namer)
    if new in matched:
        graph.inherit(new, [m for m in matched if m != new])
    if new != match.root:
        graph.replace_all_uses(match.root, new)
    candidates = [c for c in dict.fromkeys([*matched, *inputs]) if c != new and c in graph]
    params = [c for c in candidates if graph.node(c).op == "param"]
    sweep(graph, [c for c in candidates if graph.node(c).op != "param"])
    return params
