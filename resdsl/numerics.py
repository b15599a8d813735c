"""How outputs are compared: one definition of relative error for tests, the CLI and benchmarks.

NaN and infinity are compared explicitly, never folded into the error figure:

- a position where exactly one side is non-finite, or where both are but of different
  kinds (NaN against +inf, +inf against -inf), is a failure, reported with the count of
  such positions and the first of them;
- positions where both sides hold the same non-finite value (NaN and NaN, +inf and +inf)
  compare equal, and the relative error is taken over the remaining, finite positions.

So a ``nan`` error figure cannot arise, and a check cannot pass because ``nan > tol`` is False.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-4


@dataclass(frozen=True)
class Comparison:
    """One output against its reference: the error over finite positions, and why it fails otherwise."""

    error: float  # max |got - want| / max |want| over positions finite on both sides; inf when unusable
    problem: str | None = None  # a failure that no error figure expresses: shape, missing, non-finite mismatch
    nonfinite_agree: int = 0  # positions where both sides hold the same NaN or inf

    def ok(self, tol: float = TOLERANCE) -> bool:
        return self.problem is None and self.error <= tol


def _kind(a: np.ndarray) -> np.ndarray:
    """0 finite, 1 NaN, 2 +inf, 3 -inf, elementwise."""
    return np.select([np.isnan(a), np.isposinf(a), np.isneginf(a)], [1, 2, 3], 0).astype(np.int8)


def _value(a: np.ndarray, index: tuple) -> str:
    return f"{float(a[index]):.6g}"


def compare_arrays(got: np.ndarray, want: np.ndarray) -> Comparison:
    """``got`` against the reference ``want`` under the NaN rule of this module."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return Comparison(float("inf"), f"shape {got.shape} differs from the reference's {want.shape}")
    kg, kw = _kind(got), _kind(want)
    finite = (kg == 0) & (kw == 0)
    mismatch = kg != kw
    if mismatch.any():
        count = int(mismatch.sum())
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(mismatch)), mismatch.shape))
        problem = (
            f"{count} of {mismatch.size} values disagree in finiteness "
            f"(first at index {first}: got {_value(got, first)}, reference {_value(want, first)})"
        )
        return Comparison(float("inf"), problem, int((~finite & ~mismatch).sum()))
    agree = int((~finite).sum())
    if not finite.any():
        return Comparison(0.0, None, agree)
    scale = float(np.abs(want[finite]).max())
    diff = float(np.abs(got[finite] - want[finite]).max())
    return Comparison(diff / scale if scale > 0 else diff, None, agree)


def max_rel_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|: normwise, so values near zero do not blow it up.

    Positions holding the same NaN or inf on both sides are left out; any other
    non-finite position, or a shape mismatch, gives ``inf`` (never ``nan``)."""
    return compare_arrays(got, want).error


def compare(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> dict[str, Comparison]:
    """Every reference output against the same-named one of ``got``; a missing one fails."""
    return {
        k: compare_arrays(got[k], want[k]) if k in got else Comparison(float("inf"), "missing from the outputs")
        for k in want
    }


def nonfinite_counts(a: np.ndarray) -> dict[str, int]:
    """How many NaN, +inf and -inf values ``a`` holds (only the kinds present)."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        return {}
    counts = {"NaN": int(np.isnan(a).sum()), "+inf": int(np.isposinf(a).sum()), "-inf": int(np.isneginf(a).sum())}
    return {k: v for k, v in counts.items() if v}


def describe_nonfinite(a: np.ndarray) -> str | None:
    """``12 NaN values and 1 +inf value``, or None when ``a`` is all finite."""
    counts = nonfinite_counts(a)
    if not counts:
        return None
    return " and ".join(f"{n} {kind} value{'s' if n != 1 else ''}" for kind, n in counts.items())
