"""Networks on which an executor disagreed with the reference interpreter, shrunk by hypothesis.

``benchmarks/differential.py --save`` appends each new failure below as one
``CASES.append((NetSpec(...), tvm))`` line; every case must now agree on every
executor (TVM llvm only where the case needs it).
"""

from __future__ import annotations

import os
import sys

import pytest
from strategies import Block, NetSpec

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
from differential import run_network  # noqa: E402

CASES: list[tuple[NetSpec, bool]] = []


def pytest_generate_tests(metafunc):
    """Parametrised at collection, after the whole module ran, so that appended cases count."""
    if "case" in metafunc.fixturenames:
        metafunc.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])


def test_executors_agree(case, tmp_path):
    spec, tvm = case
    run_network(spec, str(tmp_path), tvm)


# Found by comparing with a torchvision twin (issue 11): a stride-2 block on a 2x2 map whose
# shortcut merely broadcast was not projected; ONNX and the interpreter agreed on the wrong shape.
CASES.append((NetSpec(False, (Block("basic", 8, 2),), "B", input_shape=(4, 2, 2), stem=4, batch=1), False))
CASES.append((NetSpec(False, (Block("basic", 4, 3),), "B", input_shape=(4, 4, 4), stem=4, batch=1), False))
# Cases the differential campaign found:
# onnx: y: max relative error # >= # (5.6e-4 on ONNX Runtime, both flavours, -O0 as -O2, ORT optimisations
# on or off: not a pass; open, an op's lowering or the conditioning of a 4-feature layer norm).
CASES.append(
    pytest.param(
        (
            NetSpec(
                dense=True,
                blocks=(
                    Block(kind="residual_mlp", width=4, stride=1, extras=("dup", "gate", "norm")),
                    Block(kind="transformer", width=4, stride=1, extras=("gate",)),
                ),
                shortcut="C",
                residual_scale=None,
                input_shape=(3, 4),
                stem=4,
                batch=1,
                level=2,
            ),
            False,
        ),
        marks=pytest.mark.xfail(reason="ONNX differs from the interpreter by 5.6e-4: open", strict=True),
    )
)
