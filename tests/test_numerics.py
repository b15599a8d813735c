"""The comparison cannot lie about NaN and inf: unit cases, then every backend on a NaN input."""

from __future__ import annotations

import numpy as np
import pytest
from resdsl.backends import open_artifact

import resdsl
from resdsl.cli import main
from resdsl.driver import CompileRequest, build_graph
from resdsl.numerics import TOLERANCE, compare_arrays, describe_nonfinite, max_rel_error

NAN, INF = float("nan"), float("inf")

# A small residual model without pooling, so a NaN stays local and finite values remain to compare.
MODEL = """
import resdsl
from resdsl import nn


@resdsl.model
def nanprobe(channels: int = 4):
    x = nn.input("x", (3, 8, 8))
    y = nn.relu(nn.conv2d(x, channels, 3, padding=1, name="conv1"))
    y = nn.conv2d(y, channels, 3, padding=1, name="conv2")
    return nn.output("y", nn.relu(y + nn.conv2d(x, channels, 1, name="proj")))
"""


def test_exactly_one_side_nonfinite_fails_with_count_and_first_index():
    want = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    got = want.copy()
    got[1, 2] = NAN
    got[2, 0] = INF
    r = compare_arrays(got, want)
    assert not r.ok() and r.error == INF
    assert "2 of 12 values disagree in finiteness" in r.problem and "first at index (1, 2)" in r.problem
    assert max_rel_error(got, want) == INF  # never nan, so `err < tol` fails as it must
    r = compare_arrays(want, got)  # the reference non-finite, the result finite: as bad
    assert not r.ok() and "got 7, reference nan" in r.problem


@pytest.mark.parametrize("a, b", [(NAN, INF), (INF, -INF), (-INF, NAN)])
def test_nonfinite_of_different_kinds_fail(a, b):
    got, want = np.array([1.0, a]), np.array([1.0, b])
    assert not compare_arrays(got, want).ok()


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_same_nonfinite_at_same_positions_compares_equal(value):
    want = np.array([[1.0, value], [value, 4.0]])
    got = want + np.array([[1e-6, 0], [0, 0]])
    r = compare_arrays(got, want)
    assert r.ok() and r.nonfinite_agree == 2
    assert r.error == pytest.approx(1e-6 / 4, rel=1e-2)  # over the finite positions only
    far = got.copy()
    far[1, 1] = 5.0
    assert not compare_arrays(far, want).ok(TOLERANCE)  # finite positions still count


def test_all_nonfinite_and_shapes():
    r = compare_arrays(np.full(3, NAN), np.full(3, NAN))
    assert r.ok() and r.error == 0.0 and r.nonfinite_agree == 3
    assert not compare_arrays(np.zeros(3), np.zeros(4)).ok()
    assert describe_nonfinite(np.array([NAN, NAN, INF, 1.0])) == "2 NaN values and 1 +inf value"
    assert describe_nonfinite(np.ones(2)) is None


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("nan") / "nanprobe.py"
    path.write_text(MODEL)
    return str(path)


def _nan_input() -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    x[0, 1, 2, 5] = NAN
    return x


@pytest.mark.parametrize("target", ["onnx", "onnx-ort", "llvm"])
def test_check_tells_the_truth_on_nan_input(target, model_file, tmp_path, capsys):
    """Whatever a backend does with a NaN input, the check reports it: it fails exactly when the
    artifact and the interpreter disagree on where the non-finite values are, with their count."""
    ext = ".so" if target == "llvm" else ".onnx"
    artifact = str(tmp_path / f"m{ext}")
    assert main(["compile", model_file, "--target", target, "-o", artifact]) == 0
    x = _nan_input()
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    rc = main(["run", artifact, "--input", f"x={tmp_path / 'x.npy'}", "--check", model_file])
    text = capsys.readouterr().out
    assert "error nan" not in text  # no figure made of NaN

    got = open_artifact(artifact, "cpu").run({"x": x})["y"]
    graph, _ = build_graph(CompileRequest(model_file, level=0))
    want = resdsl.interpret(graph, {"x": x})["y"]
    n_ref = int(np.isnan(want).sum())
    assert n_ref > 0 and f"the reference output has {n_ref} NaN values: the input x holds 1 NaN value" in text
    disagree = int((np.isnan(got) != np.isnan(want)).sum())
    if disagree:
        assert rc == 1 and f"{disagree} of {want.size} values disagree in finiteness" in text, text
    else:
        assert rc == 0 and "OK: max relative error" in text, text
    # The same outputs with one more disagreement each way: counted, and the first index named.
    nan_at = tuple(int(i) for i in np.argwhere(np.isnan(want))[0])
    healed = got.copy()
    healed[nan_at] = 0.0  # a backend dropping a NaN (as a max-based relu may)
    r = compare_arrays(healed, want)
    assert not r.ok() and f"first at index {nan_at}" in r.problem
    poisoned = want.copy()
    poisoned[0, 0, 0, 0] = NAN if np.isfinite(want[0, 0, 0, 0]) else 1.0
    assert (
        not compare_arrays(poisoned, want).ok()
        and "first at index (0, 0, 0, 0)" in compare_arrays(poisoned, want).problem
    )
