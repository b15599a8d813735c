"""Rewrite tests/golden/: the IR text after each -O2 pass of the models in tests/golden_cases.py.

Run after an intended change to a pass (``make golden``), then review and commit the diff.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))

from golden_cases import CASES, GOLDEN, dump  # noqa: E402


def main() -> int:
    for case in sorted(CASES):
        with tempfile.TemporaryDirectory() as tmp:
            names = dump(case, tmp)
            target = os.path.join(GOLDEN, case)
            shutil.rmtree(target, ignore_errors=True)
            os.makedirs(target)
            for name in names:
                shutil.copy(os.path.join(tmp, name), os.path.join(target, name))
        print(f"tests/golden/{case}: {len(names)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
