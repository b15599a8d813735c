"""``resdsl bench``: the statistics helpers, interleaving, report structure and errors. No timed assertions."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import example, randomize
from hypothesis import given, settings
from hypothesis import strategies as st
from resdsl.backends import TensorSpec

import resdsl
from resdsl.bench import fixed_batch, make_feeds, measure, summarize, throughput
from resdsl.cli import main
from resdsl.numerics import TOLERANCE
from resdsl.weights import export_weights

TINY = example("tiny.py")
KEYS = {"artifact", "batch", "median_ms", "p10_ms", "p90_ms", "throughput", "device", "target", "machine", "repeat"}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(1e-6, 10.0, allow_nan=False), min_size=1, max_size=60))
def test_summarize_is_numpy_percentiles_in_ms(times):
    s = summarize(times)
    p10, med, p90 = np.percentile(np.asarray(times) * 1e3, [10, 50, 90])
    assert (s.p10_ms, s.median_ms, s.p90_ms, s.n) == pytest.approx((p10, med, p90, len(times)))
    assert s.p10_ms <= s.median_ms <= s.p90_ms
    assert summarize(list(reversed(times))) == s  # order does not matter


def test_summarize_rejects_no_timings():
    with pytest.raises(ValueError):
        summarize([])


def test_throughput_is_samples_per_second_at_the_median():
    assert throughput(8, 4.0) == pytest.approx(2000.0)
    assert throughput(1, 0.5) == pytest.approx(2000.0)


def test_measure_interleaves_and_rotates_the_order():
    log: list[int] = []
    runs = [lambda i=i: log.append(i) for i in range(3)]
    times = measure(runs, repeat=3, warmup=1)
    assert log == [0, 1, 2] + [0, 1, 2] + [1, 2, 0] + [2, 0, 1]
    assert [len(t) for t in times] == [3, 3, 3]


def test_measure_cuts_repeats_to_the_time_budget():
    now = [0.0]

    def clock() -> float:
        return now[0]

    def slow() -> None:  # each run takes one fake second
        now[0] += 1.0

    times = measure([slow, slow], repeat=100, warmup=1, max_seconds=10, clock=clock)
    assert [len(t) for t in times] == [5, 5]  # 10 s / (2 runs x 1 s) rounds
    assert all(t == pytest.approx(1.0) for t in times[0])
    times = measure([slow, slow], repeat=100, warmup=0, max_seconds=1, clock=clock)
    assert [len(t) for t in times] == [3, 3]  # never below min_repeat


def test_make_feeds_gives_every_artifact_the_same_arrays():
    specs_a = [TensorSpec("image", ("N", 3, 4, 4))]
    specs_b = [TensorSpec("image", ("N", 3, 4, 4)), TensorSpec("mask", (2, 5))]
    cache: dict = {}
    a = make_feeds(specs_a, 2, seed=3, cache=cache)
    b = make_feeds(specs_b, 2, seed=3, cache=cache)
    assert a["image"] is b["image"] and a["image"].shape == (2, 3, 4, 4) and a["image"].dtype == np.float32
    assert b["mask"].shape == (2, 5)
    again = make_feeds(specs_a, 2, seed=3)  # no shared cache: still the same values
    assert np.array_equal(again["image"], a["image"])
    assert not np.array_equal(make_feeds(specs_a, 2, seed=4)["image"], a["image"])


def test_fixed_batch_from_sidecar_or_integer_leading_dims():
    symbolic = SimpleNamespace(inputs=[TensorSpec("x", ("N", 3))])
    assert fixed_batch(symbolic) is None
    assert fixed_batch(SimpleNamespace(inputs=[TensorSpec("x", (4, 3))])) == 4
    assert fixed_batch(SimpleNamespace(inputs=symbolic.inputs, meta={"batch": 2})) == 2


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """tiny as onnx and onnx-ort, plus tiny with other weights (so its outputs differ)."""
    d = tmp_path_factory.mktemp("bench")
    paths = {t: str(d / f"tiny-{t}.onnx") for t in ("onnx", "onnx-ort")}
    for target, path in paths.items():
        assert main(["compile", TINY, "--target", target, "-o", path]) == 0
    graph = randomize(resdsl.load(TINY), seed=5)
    weights = export_weights(graph, str(d / "other.npz"))
    paths["other"] = str(d / "tiny-other.onnx")
    assert main(["compile", TINY, "--weights", weights, "-o", paths["other"]]) == 0
    return paths


def bench_json(capsys, *args: str) -> tuple[list[dict], str]:
    capsys.readouterr()
    assert main(["bench", *args, "--json"]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_json_records_per_artifact_and_batch(artifacts, capsys):
    a, b = artifacts["onnx"], artifacts["onnx-ort"]
    records, err = bench_json(capsys, a, b, "--batch", "1,2", "--repeat", "3", "--warmup", "1")
    assert [(r["artifact"], r["batch"]) for r in records] == [(a, 1), (b, 1), (a, 2), (b, 2)]
    for r in records:
        assert KEYS <= set(r)
        assert r["repeat"] == 3 and r["warmup"] == 1
        assert 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
        assert r["throughput"] == pytest.approx(r["batch"] * 1e3 / r["median_ms"])
        assert "CPUExecutionProvider" in r["device"]
        assert r["machine"]["cores"] >= 1 and r["machine"]["cpu"]
    assert [r["target"] for r in records[:2]] == ["onnx", "onnx-ort"]
    # Same inputs for both: the two flavours of one network agree; the first has nothing to compare with.
    assert records[0]["max_rel_error_vs_first"] is None
    assert records[1]["max_rel_error_vs_first"] < TOLERANCE
    assert "batch 2" in err  # progress on stderr


def test_outputs_of_a_different_network_are_flagged(artifacts, capsys):
    records, _ = bench_json(capsys, artifacts["onnx"], artifacts["other"], "--repeat", "3")
    assert records[1]["max_rel_error_vs_first"] > 1e-2


def test_model_file_is_compiled_for_each_target(capsys):
    records, err = bench_json(capsys, TINY, "--target", "onnx,onnx-ort", "--repeat", "3", "-O", "1")
    assert [(r["artifact"], r["target"]) for r in records] == [
        ("tiny.py[onnx]", "onnx"),
        ("tiny.py[onnx-ort]", "onnx-ort"),
    ]
    assert all(r["compile_s"] > 0 for r in records)
    assert records[1]["max_rel_error_vs_first"] < TOLERANCE
    assert "compiling tiny for onnx-ort" in err


def test_text_report(artifacts, capsys):
    assert main(["bench", artifacts["onnx"], "--repeat", "3", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: ")
    header = next(line for line in out.splitlines() if line.startswith("artifact"))
    assert header.split()[:4] == ["artifact", "target", "batch", "median"]
    row = next(line for line in out.splitlines() if line.startswith(artifacts["onnx"]))
    assert row.split()[1:3] == ["onnx", "2"]


@pytest.mark.skipif(importlib.util.find_spec("tvm") is None, reason="apache-tvm is not installed")
def test_fixed_batch_tvm_artifact_skips_other_batches(tmp_path, artifacts, capsys):
    lib = str(tmp_path / "tiny-b2.so")
    assert main(["compile", TINY, "--target", "llvm", "--batch", "2", "-o", lib]) == 0
    records, err = bench_json(capsys, artifacts["onnx"], lib, "--batch", "1,2", "--repeat", "3", "--warmup", "1")
    assert [(r["artifact"], r["batch"]) for r in records] == [(artifacts["onnx"], 1), (artifacts["onnx"], 2), (lib, 2)]
    assert records[2]["target"] == "llvm" and "cpu" in records[2]["device"]
    assert records[2]["max_rel_error_vs_first"] < TOLERANCE  # TVM and ORT on the same input
    assert "compiled for batch 2 only, batch 1 skipped" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.onnx"], "does not exist"),
        (["missing_model.py"], "does not exist"),
        ([TINY, "--target", "onnx,vulkan"], "unknown target 'vulkan'"),
        (["{onnx}", "--batch", "1,x"], "not a positive integer"),
        (["{onnx}", "--batch", "0"], "not a positive integer"),
        (["{onnx}", "--repeat", "0"], "--repeat must be >= 1"),
    ],
)
def test_user_errors_are_one_line(artifacts, capsys, args, message):
    args = [a.format(onnx=artifacts["onnx"]) for a in args]
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resdsl: error: ") and message in err and "Traceback" not in err


def test_unknown_artifact_type(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("not a model")
    assert main(["bench", str(path)]) == 2
    assert "unknown artifact type" in capsys.readouterr().err
