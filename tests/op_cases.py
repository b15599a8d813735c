"""One small case per registered op, shared by every backend's op tests: the cases live in each
op's registry entry (``resdsl/ops/``), so adding an op adds its test cases in the same place."""

from __future__ import annotations

from resdsl.registry import OPS


def op_cases() -> list[tuple[str, str, list, dict, dict]]:
    """(case id, op, input shapes, attrs, params) — params are shapes (random) or arrays."""
    return [(cid, name, ins, attrs, params) for name, op in OPS.items() for cid, ins, attrs, params in op.cases]
