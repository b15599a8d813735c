"""Every op's NumPy reference against ONNX Runtime, with ORT's graph optimisations on and off."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import assert_close, index_model, interpret_random, single_op
from op_cases import op_cases
from resdsl.backends import OnnxOptions, emit
from resdsl.backends.onnx.runner import OrtRunner

from resdsl import registry

CASES = op_cases()


def test_every_op_has_a_case_and_a_lowering():
    import resdsl.backends.onnx.emit  # noqa: F401  (registers the table)

    covered = {op for _, op, *_ in CASES} | {"input", "param"}
    assert covered == set(registry.OPS)
    assert registry.missing_lowerings("onnx") == [] and registry.missing_lowerings("onnx-ort") == []


def test_runner_does_not_import_the_emitter():
    """Running a .onnx needs onnxruntime, not the emitter nor the onnx package it builds models with."""
    code = "import sys, resdsl.backends.onnx.runner; print([m for m in sys.modules if 'emit' in m or m == 'onnx'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("flavour", ["onnx", "onnx-ort"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_against_onnxruntime(case, flavour, tmp_path):
    _, op, shapes, attrs, params = case
    graph = single_op(op, shapes, attrs, params)
    feeds, want = interpret_random(graph, batch=2)
    path = str(tmp_path / "op.onnx")
    emit(graph, path, OnnxOptions(flavour))
    for optimize in (True, False):
        got = OrtRunner(path, "cpu", optimize=optimize).run(feeds)
        assert_close(got, want)


@pytest.mark.parametrize("flavour", ["onnx", "onnx-ort"])
def test_int64_index_input_end_to_end(flavour, tmp_path, capsys):
    """An int64 input is an INT64 ONNX input; run --random feeds indices below the table's size."""
    from resdsl.cli import main

    model, out = index_model(tmp_path), str(tmp_path / "tagger.onnx")
    assert main(["compile", model, "--target", flavour, "-o", out]) == 0
    runner = OrtRunner(out, "cpu")
    assert [(s.name, s.dtype) for s in runner.inputs] == [("ids", "int64")]
    assert runner.index_bounds == {"ids": 5}
    assert main(["run", out, "--random", "--batch", "3", "--seed", "4", "--check", model]) == 0
    assert "OK" in capsys.readouterr().out
