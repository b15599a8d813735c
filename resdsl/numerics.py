"""How outputs are compared: one definition of relative error for tests, the CLI and benchmarks."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

TOLERANCE = 1e-4


def max_rel_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|: normwise, so values near zero do not blow it up."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf")
    scale = np.abs(want).max() if want.size else 0.0
    diff = np.abs(got - want).max() if want.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)


def compare(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {k: max_rel_error(got[k], want[k]) if k in got else float("inf") for k in want}
