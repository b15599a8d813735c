"""The TVM backend: every op and whole models compiled for llvm, run in the Relax VM, equal to the
reference interpreter; CUDA builds on a machine without a GPU; every runner error by its message."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_close, example, index_model, interpret_random, randomize, single_op
from op_cases import op_cases
from resdsl.backends import CudaOptions, LlvmOptions, emit, make_options, open_artifact
from resdsl.passes import pipeline, run_passes

import resdsl
from resdsl import nn, registry

tvm = pytest.importorskip("tvm")

from resdsl.backends.tvm import artifact, build  # noqa: E402
from resdsl.backends.tvm.artifact import sha256_file  # noqa: E402
from resdsl.backends.tvm.build import compile_graph  # noqa: E402
from resdsl.backends.tvm.runner import TvmRunner  # noqa: E402
from resdsl.backends.tvm.target import llvm_target  # noqa: E402

CASES = op_cases()
RESNET = example("resnet.py")


@resdsl.model
def dense_mlp(width: int = 32, depth: int = 3):
    """A dense residual MLP: pre-norm blocks with GELU, each added back to the stream."""
    h = nn.linear(nn.input("x", (16,)), width, name="embed")
    for i in range(depth):
        with nn.scope(f"block{i}"):
            y = nn.gelu(nn.linear(nn.layer_norm(h, name="ln"), 2 * width, name="fc1"))
            h = h + nn.linear(y, width, name="fc2")
    return nn.output("y", nn.linear(nn.relu(h), 4, name="head"))


def run_in_memory(graph: resdsl.Graph, feeds: dict) -> dict:
    """Compile for llvm and run in the Relax VM without linking a .so (fast, for small graphs)."""
    from tvm import relax

    vm = relax.VirtualMachine(compile_graph(graph, llvm_target()), tvm.cpu())
    result = vm["main"](*[tvm.runtime.tensor(feeds[graph.node(i).attrs["name"]]) for i in graph.inputs])
    return {name: value.numpy() for (name, _), value in zip(graph.outputs, result)}


def test_every_registered_op_has_a_lowering():
    import resdsl.backends.tvm.lower  # noqa: F401  (registers the table)

    assert registry.missing_lowerings("tvm") == []


def test_runner_does_not_import_the_compiler():
    """Loading a .so to run it needs the sidecar format and the CPU checks, not the schedules."""
    code = (
        "import sys, resdsl.backends.tvm.runner; "
        "print([m for m in sys.modules if any(w in m for w in ('schedule', 'winograd', 'rules', 'lower', 'tiles'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_options_are_per_target_and_frozen(tmp_path):
    """--db is parsed once: a tile book is llvm's ``tiles``, a directory its ``db``; onnx takes none."""
    book = make_options("cpu", db=str(tmp_path / "t.json"))
    assert isinstance(book, LlvmOptions) and book.tiles == str(tmp_path / "t.json") and book.db is None
    assert make_options("llvm", db=str(tmp_path)).db == str(tmp_path)
    with pytest.raises(resdsl.ResdslError, match="--db is for the TVM targets"):
        make_options("onnx", db=str(tmp_path))
    with pytest.raises(resdsl.ResdslError, match="CPU tile book, not a database for cuda"):
        make_options("cuda", db="t.json")
    with pytest.raises(resdsl.ResdslError, match="--batch must be a positive integer"):
        make_options("llvm", batch=0)
    with pytest.raises(dataclasses.FrozenInstanceError):  # emit cannot change its caller's options
        make_options("cpu").batch = 2


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_in_relax_vm(case):
    """One op at batch 2."""
    _, op, shapes, attrs, params = case
    graph = single_op(op, shapes, attrs, params)
    feeds, want = interpret_random(graph, batch=2)
    assert_close(run_in_memory(graph, feeds), want)


@pytest.mark.parametrize(
    "op, attrs, params",
    [
        ("relu", {}, {}),
        ("clip", {"min": 0.0, "max": 6.0}, {}),
        ("fused_conv", {"padding": 1, "activation": "relu"}, {"w": (8, 4, 3, 3), "b": (8,)}),
    ],
    ids=["relu", "relu6", "fused_conv_relu"],
)
def test_nan_propagates_through_relu_and_clip(op, attrs, params):
    """A NaN input stays NaN through relu, clip and a fused relu epilogue, as in the interpreter
    (TOPI's max(x, 0) answered 0)."""
    graph = single_op(op, [("N", 4, 6, 16)], attrs, params)
    feeds = resdsl.random_inputs(graph, 2, 0)
    feeds["x0"][0, 1, 2, :3] = np.nan
    want = resdsl.interpret(graph, feeds)
    assert np.isnan(want["y"]).any()
    assert_close(run_in_memory(graph, feeds), want)  # NaN where the reference has NaN, and only there


def test_several_outputs_including_an_input_and_a_parameter():
    """Outputs in declared order, even when one is a graph input or a parameter itself."""
    g = resdsl.Graph("multi")
    x = g.add_input("x", ("N", 5))
    w = g.add_param("w", np.arange(5, dtype=np.float32))
    g.set_output("scaled", g.add_node("mul", [x, w]))
    g.set_output("same", g.add_node("identity", [x]))
    g.set_output("weights", w)
    feeds, want = interpret_random(g, batch=3)
    assert_close(run_in_memory(g, feeds), want)


# ---------------------------------------------------------------- whole models, through the artifact


def _graph(name: str, level: int) -> resdsl.Graph:
    if name == "tiny":
        g = resdsl.load(example("tiny.py"))
    elif name == "resnet18":
        if not os.path.exists(RESNET):
            pytest.skip("examples/resnet.py is not there yet")
        g = resdsl.load(RESNET, "resnet18", image_size=64)
    else:
        g = resdsl.canonical(dense_mlp)
    g = randomize(g)  # batch norms that are not identities, so folding is really exercised
    return g if level == 0 else run_passes(g, pipeline(level)).graph


MODELS = [(m, lvl) for m in ("tiny", "dense_mlp", "resnet18") for lvl in (0, 2)]


@pytest.fixture(scope="module", params=MODELS, ids=[f"{m}-O{lvl}" for m, lvl in MODELS])
def built(request, tmp_path_factory):
    name, level = request.param
    graph = _graph(name, level)
    path = str(tmp_path_factory.mktemp("tvm") / f"{name}.so")
    files = emit(graph, path, LlvmOptions(provenance={"model": name}))
    assert files == [path, path[:-3] + ".json"]
    return graph, path


def test_model_equals_interpreter(built):
    graph, path = built
    runner = open_artifact(path)
    assert runner.device == "tvm llvm cpu(0)"
    assert [s.name for s in runner.outputs] == [name for name, _ in graph.outputs]
    for batch in (1, 3):  # one module, two batch sizes: N stays symbolic
        feeds, want = interpret_random(graph, batch=batch, seed=batch)
        assert_close(runner.run(feeds), want)


def test_sidecar_describes_the_library(built):
    graph, path = built
    meta = json.load(open(path[:-3] + ".json"))
    assert meta["sha256"] == sha256_file(path)
    assert meta["target"]["kind"] == "llvm" and meta["batch"] is None
    assert meta["resdsl_version"] == resdsl.__version__
    assert meta["provenance"] == {"model": graph.name}
    x = graph.node(graph.inputs[0])
    assert meta["inputs"][0] == {"name": x.attrs["name"], "shape": list(x.shape), "dtype": "float32"}
    assert meta["inputs"][0]["shape"][0] == "N"


# ---------------------------------------------------------------- fixed batch and CUDA


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tiny") / "tiny.so")
    emit(randomize(resdsl.load(example("tiny.py"))), path, LlvmOptions())
    return path


def test_fixed_batch_is_recorded_and_enforced(tmp_path):
    graph = randomize(resdsl.load(example("tiny.py")))
    path = str(tmp_path / "b2.so")
    emit(graph, path, make_options("cpu", batch=2))
    meta = json.load(open(tmp_path / "b2.json"))
    assert meta["batch"] == 2 and meta["inputs"][0]["shape"] == [2, 3, 32, 32]
    runner = open_artifact(path)
    feeds, want = interpret_random(graph, batch=2)
    assert_close(runner.run(feeds), want)
    with pytest.raises(resdsl.ResdslError, match=r"shape \(3, 3, 32, 32\), the artifact expects \(2, 3, 32, 32\)"):
        runner.run(interpret_random(graph, batch=3)[0])


def test_cuda_builds_without_a_gpu(tmp_path):
    if not os.path.exists(RESNET):
        pytest.skip("examples/resnet.py is not there yet")
    graph = randomize(resdsl.load(RESNET, "resnet18", image_size=64))
    path = str(tmp_path / "r18_cuda.so")
    emit(graph, path, CudaOptions(provenance={"model": "resnet18"}))
    meta = json.load(open(tmp_path / "r18_cuda.json"))
    assert meta["target"]["kind"] == "cuda" and meta["target"]["arch"] == "sm_90" and meta["arch"] == "sm_90"
    assert meta["device"] == "cuda" and meta["sha256"] == sha256_file(path)
    assert meta["inputs"] == [{"name": "image", "shape": ["N", 3, 64, 64], "dtype": "float32"}]
    assert meta["outputs"] == [{"name": "logits", "shape": ["N", 1000], "dtype": "float32"}]
    if tvm.cuda(0).exist:
        feeds, want = interpret_random(graph, batch=2)
        assert_close(open_artifact(path).run(feeds), want)
    else:
        with pytest.raises(resdsl.ResdslError, match="CUDA module but no GPU is present"):
            open_artifact(path)


NEW_OPS = {
    "clip", "hardsigmoid", "hardswish", "tanh", "leaky_relu", "elu", "dropout", "stochastic_depth",
    "reduce_mean", "reduce_sum", "reduce_max", "resize", "conv_transpose2d", "group_norm", "layer_norm",
    "embedding", "slice", "div", "pow", "max_pool2d", "avg_pool2d",
}  # fmt: skip


@pytest.mark.parametrize("case", [c for c in CASES if c[1] in NEW_OPS], ids=[c[0] for c in CASES if c[1] in NEW_OPS])
def test_new_op_builds_for_cuda(case):
    """The new ops (and pool attributes) compile for cuda without a GPU (DLight schedules them)."""
    from resdsl.backends.tvm.target import cuda_target

    _, op, shapes, attrs, params = case
    graph = single_op(op, shapes, attrs, params)
    executable = compile_graph(graph, cuda_target("sm_90"))
    if tvm.cuda(0).exist:
        from tvm import relax

        feeds, want = interpret_random(graph, batch=2)
        vm = relax.VirtualMachine(executable, tvm.cuda(0))
        args = [tvm.runtime.tensor(feeds[graph.node(i).attrs["name"]], tvm.cuda(0)) for i in graph.inputs]
        got = {name: v.numpy() for (name, _), v in zip(graph.outputs, vm["main"](*args))}
        assert_close(got, want)


def test_cuda_arch_is_passed_through_and_checked(tmp_path):
    graph = resdsl.canonical(dense_mlp, width=8, depth=1)
    emit(graph, str(tmp_path / "m.so"), CudaOptions(arch="sm_80", batch=4))
    meta = json.load(open(tmp_path / "m.json"))
    assert meta["target"]["arch"] == "sm_80" and meta["batch"] == 4
    with pytest.raises(resdsl.ResdslError, match="invalid CUDA architecture"):
        emit(graph, str(tmp_path / "bad.so"), CudaOptions(arch="ampere"))
    assert not (tmp_path / "bad.so").exists()


# ---------------------------------------------------------------- errors


def _copy(src: str, dst_dir, sidecar: bool = True) -> str:
    dst = os.path.join(dst_dir, "m.so")
    shutil.copy(src, dst)
    if sidecar:
        shutil.copy(src[:-3] + ".json", dst[:-3] + ".json")
    return dst


def test_missing_sidecar(tiny_path, tmp_path):
    with pytest.raises(resdsl.ResdslError, match="has no sidecar"):
        open_artifact(_copy(tiny_path, tmp_path, sidecar=False))


def test_tampered_library(tiny_path, tmp_path):
    path = _copy(tiny_path, tmp_path)
    with open(path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(resdsl.ResdslError, match="sha256 differs"):
        open_artifact(path)


def test_corrupt_library(tiny_path, tmp_path):
    """A sidecar that matches a library TVM cannot load: the loader's failure, in one line."""
    path = _copy(tiny_path, tmp_path)
    with open(path, "wb") as f:
        f.write(b"not a shared library")
    meta = json.load(open(path[:-3] + ".json"))
    meta["sha256"] = sha256_file(path)
    json.dump(meta, open(path[:-3] + ".json", "w"))
    with pytest.raises(resdsl.ResdslError, match="cannot load TVM library"):
        open_artifact(path)


def test_wrong_device(tiny_path):
    with pytest.raises(resdsl.ResdslError, match="compiled for cpu, it cannot run on cuda"):
        TvmRunner(tiny_path, "cuda")


def test_wrong_inputs(tiny_path):
    runner = open_artifact(tiny_path, device="cpu")
    good = np.zeros((1, 3, 32, 32), np.float32)
    with pytest.raises(resdsl.ResdslError, match=r"input 'image' has shape \(1, 3, 16, 16\)"):
        runner.run({"image": np.zeros((1, 3, 16, 16), np.float32)})
    with pytest.raises(resdsl.ResdslError, match="dtype float64"):
        runner.run({"image": good.astype(np.float64)})
    with pytest.raises(resdsl.ResdslError, match="unknown input picture"):
        runner.run({"picture": good})


def test_failed_emit_leaves_nothing(tmp_path, monkeypatch):
    """A failure while writing the sidecar, after the library is in place under its temporary
    name, must leave neither file (nor a temporary one)."""

    def boom(*args, **kwargs):
        raise resdsl.ResdslError("sidecar failed")

    monkeypatch.setattr(build.json, "dump", boom)
    with pytest.raises(resdsl.ResdslError, match="sidecar failed"):
        emit(resdsl.canonical(dense_mlp, width=8, depth=1), str(tmp_path / "m.so"), LlvmOptions())
    assert os.listdir(tmp_path) == []


def test_cli_compile_and_run_check(tmp_path, capsys):
    from resdsl.cli import main

    out = str(tmp_path / "tiny.so")
    assert main(["compile", example("tiny.py"), "--target", "cpu", "-o", out]) == 0
    assert main(["run", out, "--random", "--batch", "2", "--check", example("tiny.py")]) == 0
    text = capsys.readouterr().out
    assert "tvm llvm cpu(0)" in text and "OK" in text


def test_int64_index_input_end_to_end(tmp_path, capsys):
    """The module takes int64 indices; the sidecar records the dtype and the table's size, the
    runner checks the dtype, and run --random feeds indices the table has."""
    from resdsl.cli import main

    model, out = index_model(tmp_path), str(tmp_path / "tagger.so")
    assert main(["compile", model, "--target", "cpu", "-o", out]) == 0
    (entry,) = json.load(open(artifact.sidecar_path(out)))["inputs"]
    assert (entry["dtype"], entry["index_bound"]) == ("int64", 5)
    runner = TvmRunner(out)
    assert runner.index_bounds == {"ids": 5}
    with pytest.raises(resdsl.ResdslError, match="dtype int32, the artifact expects int64"):
        runner.run({"ids": np.zeros((2, 7), np.int32)})
    assert main(["run", out, "--random", "--batch", "3", "--seed", "4", "--check", model]) == 0
    assert "OK" in capsys.readouterr().out


def test_library_for_a_richer_cpu_is_refused(tmp_path):
    path = str(tmp_path / "tiny.so")
    emit(resdsl.load(example("tiny.py")), path, LlvmOptions())
    meta_path = artifact.sidecar_path(path)
    meta = json.load(open(meta_path))
    assert "sse2" in meta["cpu_flags"]
    meta["cpu_flags"].append("avx1024_imaginary")
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(resdsl.ResdslError, match="built for a CPU with avx1024_imaginary"):
        TvmRunner(path)


@pytest.mark.parametrize("target", ["llvm", "cuda"])
def test_database_is_checked_and_applied_on_both_targets(target, tmp_path):
    graph = resdsl.load(example("tiny.py"))
    with pytest.raises(resdsl.ResdslError, match="does not exist") as info:
        emit(graph, str(tmp_path / "x.so"), make_options(target, db=str(tmp_path / "nodb")))
    assert "TVM failed" not in str(info.value)
    db = tmp_path / "db"
    db.mkdir()
    for name in ("database_workload.json", "database_tuning_record.json"):
        (db / name).write_text("")
    path = str(tmp_path / "m.so")
    emit(graph, path, make_options(target, db=str(db)))
    assert json.load(open(artifact.sidecar_path(path)))["db"] == str(db)
    if target == "llvm":
        feeds, want = interpret_random(graph)
        assert_close(TvmRunner(path).run(feeds), want)
