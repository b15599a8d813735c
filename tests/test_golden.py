"""Golden IR text: the listing after each -O2 pass of two models, compared line by line.

A change to any pass shows up here as a reviewable diff. When the change is intended,
refresh the files with ``make golden`` (``python scripts/refresh_golden.py``) and commit them.
"""

from __future__ import annotations

import difflib
import os

import pytest
from golden_cases import CASES, GOLDEN, dump


@pytest.mark.parametrize("case", sorted(CASES))
def test_ir_after_each_pass_matches_golden(case, tmp_path):
    names = dump(case, str(tmp_path))
    want_dir = os.path.join(GOLDEN, case)
    assert names == sorted(os.listdir(want_dir)), "the -O2 pipeline's passes changed: run `make golden`"
    for name in names:
        got = (tmp_path / name).read_text().splitlines()
        with open(os.path.join(want_dir, name)) as f:
            want = f.read().splitlines()
        if got != want:
            diff = "\n".join(list(difflib.unified_diff(want, got, f"golden/{case}/{name}", "now", lineterm=""))[:60])
            pytest.fail(
                f"IR after {name} differs from the golden text (refresh with `make golden` if intended):\n{diff}"
            )
