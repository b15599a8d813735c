"""Every op's NumPy reference against ONNX Runtime, with ORT's graph optimisations on and off."""

from __future__ import annotations

import pytest
from helpers import assert_close, interpret_random, single_op
from op_cases import op_cases
from resdsl.backends import EmitOptions, emit
from resdsl.backends.ort_runner import OrtRunner

from resdsl import registry

CASES = op_cases()


def test_every_op_has_a_case_and_a_lowering():
    from resdsl.backends.onnx_emit import LOWERING

    covered = {op for _, op, *_ in CASES} | {"input", "param"}
    assert covered == set(registry.OPS)
    assert set(LOWERING) | {"input", "param"} == set(registry.OPS)


@pytest.mark.parametrize("flavour", ["onnx", "onnx-ort"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_against_onnxruntime(case, flavour, tmp_path):
    _, op, shapes, attrs, params = case
    graph = single_op(op, shapes, attrs, params)
    feeds, want = interpret_random(graph, batch=2)
    path = str(tmp_path / "op.onnx")
    emit(graph, path, EmitOptions(target=flavour))
    for optimize in (True, False):
        got = OrtRunner(path, "cpu", optimize=optimize).run(feeds)
        assert_close(got, want)
