"""Triton model repositories from resdsl artifacts, checked by Triton's own config parser and served for real.

The served tests start the tritonserver bundled by nvidia-pytriton on 127.0.0.1 (free ports,
one server per artifact, always stopped) and compare every response with the same artifact
run in-process, which in turn matches the reference interpreter.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import types

import numpy as np
import pytest
from helpers import example

from resdsl.cli import main
from resdsl.errors import ResdslError
from resdsl.feeds import TensorSpec
from resdsl.numerics import max_rel_error

text_format = pytest.importorskip("google.protobuf.text_format", reason="protobuf is not installed")
model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed (pip install 'resdsl[serve]')"
)

from resdsl.serving import triton_repo, triton_server  # noqa: E402
from resdsl.serving.triton_repo import ArtifactInfo, TritonExport  # noqa: E402

RESNET = example("resnet.py")
TINY = example("tiny.py")
SERVED_TOL = 1e-5


def parse(text: str):
    """Triton's own ModelConfig protobuf: what tritonserver parses config.pbtxt with."""
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def export(*argv: str) -> int:
    return main(["export", "triton", *argv])


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("tiny") / "tiny.onnx")
    assert main(["compile", TINY, "--target", "onnx", "-o", out]) == 0
    return out


def test_onnx_configs_parse_with_tritons_model_config(tiny_onnx, tmp_path):
    repo = str(tmp_path / "models")
    assert export(tiny_onnx, "--repo", repo) == 0
    assert export(tiny_onnx, "--repo", repo, "--name", "py", "--backend", "python", "--preferred-batch", "4,8") == 0
    ort = parse(open(os.path.join(repo, "tiny", "config.pbtxt")).read())
    assert (ort.name, ort.backend, ort.max_batch_size) == ("tiny", "onnxruntime", 32)
    assert [(i.name, list(i.dims), i.data_type) for i in ort.input] == [
        ("image", [3, 32, 32], model_config_pb2.TYPE_FP32)
    ]
    assert [(o.name, list(o.dims)) for o in ort.output] == [("logits", [10])]
    assert ort.dynamic_batching.max_queue_delay_microseconds == 500
    assert ort.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_AUTO
    assert ort.parameters["resdsl.model"].string_value == "tiny"
    assert ort.parameters["resdsl.target"].string_value == "onnx"
    assert len(ort.parameters["resdsl.model_hash"].string_value) == 16
    assert sorted(os.listdir(os.path.join(repo, "tiny", "1"))) == ["model.onnx"]
    py = parse(open(os.path.join(repo, "py", "config.pbtxt")).read())
    assert py.backend == "python" and list(py.dynamic_batching.preferred_batch_size) == [4, 8]
    assert sorted(os.listdir(os.path.join(repo, "py", "1"))) == ["model.onnx", "model.py"]
    assert not [d for d in os.listdir(repo) if d.startswith(".")]  # no staging directory left behind


def _info(inputs, outputs, device="cpu") -> ArtifactInfo:
    return ArtifactInfo("m.so", "tvm", inputs, outputs, device, "llvm", "0.1.0", {"model": "m"}, {})


def test_fixed_batch_and_dynamic_dims_and_gpu_kind():
    fixed = _info([TensorSpec("x", (2, 3))], [TensorSpec("y", (2, 4))], device="cuda")
    text, mbs = triton_repo.render_config(TritonExport("m.so", "r"), fixed, "m", "python")
    cfg = parse(text)
    assert mbs == 0 and cfg.max_batch_size == 0 and list(cfg.input[0].dims) == [2, 3]
    assert not cfg.HasField("dynamic_batching")  # Triton refuses a batcher without a batch dimension
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    dynamic = _info([TensorSpec("x", ("N", "L"))], [TensorSpec("y", ("N", 4))])
    onnx_info = ArtifactInfo("m.onnx", "onnx", dynamic.inputs, dynamic.outputs, None, "onnx", "", {}, {})
    cfg = parse(triton_repo.render_config(TritonExport("m.onnx", "r"), onnx_info, "m", "onnxruntime")[0])
    assert list(cfg.input[0].dims) == [-1] and cfg.max_batch_size == 32
    with pytest.raises(ResdslError, match="dynamic dimension 'L' besides the batch"):
        triton_repo.render_config(TritonExport("m.so", "r"), dynamic, "m", "python")
    clash = _info([TensorSpec("x", ("N", 3))], [TensorSpec("x", ("N", 3))])
    with pytest.raises(ResdslError, match="output 'x' is named like an input"):
        triton_repo.render_config(TritonExport("m.so", "r"), clash, "m", "python")
    with pytest.raises(ResdslError, match="compiled for cuda"):
        triton_repo.render_config(TritonExport("m.so", "r", kind="cpu"), fixed, "m", "python")


@pytest.mark.parametrize("name", ["a/b", "..", "x..y", "a\\b", ".hidden"])
def test_names_with_path_separators_are_refused(tiny_onnx, tmp_path, capsys, name):
    assert export(tiny_onnx, "--repo", str(tmp_path), "--name", name) == 2
    err = capsys.readouterr().err
    assert err.startswith("resdsl: error: model name") and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_tvm_module_without_sidecar_and_onnxruntime_for_tvm_are_refused(tmp_path, capsys):
    lib = tmp_path / "m.so"
    lib.write_bytes(b"\x7fELF not really")
    assert export(str(lib), "--repo", str(tmp_path / "r")) == 2
    assert "has no sidecar" in capsys.readouterr().err
    info = _info([TensorSpec("x", ("N", 3))], [TensorSpec("y", ("N", 3))])
    with pytest.raises(ResdslError, match="Triton has no TVM backend"):
        triton_repo._backend(TritonExport(str(lib), "r", backend="onnxruntime"), info)


def test_versions_are_numbered_and_never_overwritten(tiny_onnx, tmp_path, capsys):
    repo = str(tmp_path)
    for _ in range(2):
        assert export(tiny_onnx, "--repo", repo) == 0
    assert export(tiny_onnx, "--repo", repo, "--version", "2") == 2
    assert "already exists" in capsys.readouterr().err
    assert export(tiny_onnx, "--repo", repo, "--version", "5") == 0
    assert export(tiny_onnx, "--repo", repo) == 0
    assert sorted(os.listdir(os.path.join(repo, "tiny"))) == ["1", "2", "5", "6", "config.pbtxt"]
    assert export(tiny_onnx, "--repo", repo, "--backend", "python") == 2  # another backend, same name
    assert "other inputs, outputs, batching or backend" in capsys.readouterr().err


def test_missing_bundle_says_how_to_install_and_how_to_use_the_container(monkeypatch, tmp_path, capsys):
    no_spec = types.SimpleNamespace(util=types.SimpleNamespace(find_spec=lambda name: None))
    monkeypatch.setattr(triton_server, "importlib", no_spec)
    assert main(["serve", "--repo", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'resdsl[serve]'" in err
    assert "docker run --gpus all" in err and "nvcr.io/nvidia/tritonserver:" in err


# ---- served for real ------------------------------------------------------------------------------------------------


def _bundle_or_skip() -> None:
    try:
        triton_server.find_bundle()
    except ResdslError as e:
        pytest.skip(f"no tritonserver here: {e.render()}")
    pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
    pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")


@pytest.fixture(scope="module", params=["onnx", "llvm"])
def served(request, tmp_path_factory):
    """resnet18 at 64x64 exported with the Python backend and served with polling; stopped whatever happens."""
    _bundle_or_skip()
    target = request.param
    work = tmp_path_factory.mktemp(f"served-{target}")
    artifact = str(work / ("r18.onnx" if target == "onnx" else "r18.so"))
    args = ["compile", RESNET, "--model", "resnet18", "--arg", "image_size=64", "--target", target, "-o", artifact]
    assert main(args) == 0
    repo = str(work / "models")
    flags = ["--repo", repo, "--name", "r18", "--backend", "python", "--max-batch", "8", "--queue-delay-us", "20000"]
    assert export(artifact, *flags) == 0
    server = triton_server.TritonServer(repo, triton_server.free_port(), triton_server.free_port(), poll_secs=1)
    try:
        server.start(timeout=120)
        _wait(lambda: any(m.get("state") == "READY" for m in server.models()), 90, server)
        from resdsl.backends import open_artifact

        yield {"server": server, "artifact": artifact, "repo": repo, "flags": flags, "runner": open_artifact(artifact)}
    finally:
        server.stop()
        shutil.rmtree(repo, ignore_errors=True)


def _wait(condition, seconds: float, server) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {seconds} s; server log:\n{server.log_tail(15)}")


def _infer(protocol: str, server, x: np.ndarray, version: str = "") -> np.ndarray:
    if protocol == "http":
        import tritonclient.http as client
    else:
        import tritonclient.grpc as client
    url = server.http_url.removeprefix("http://") if protocol == "http" else server.grpc_url
    c = client.InferenceServerClient(url)
    try:
        inp = client.InferInput("image", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = c.infer("r18", [inp], model_version=version, outputs=[client.InferRequestedOutput("logits")])
        return result.as_numpy("logits")
    finally:
        c.close()


def _stats(server):
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        s = c.get_inference_statistics("r18").model_stats
        return sum(m.inference_stats.success.count for m in s), sum(m.execution_count for m in s)
    finally:
        c.close()


def test_concurrent_http_and_grpc_requests_equal_the_artifact_and_are_batched(served):
    from resdsl.driver import CompileRequest, build_graph
    from resdsl.interpreter import interpret

    server, runner = served["server"], served["runner"]
    rng = np.random.default_rng(7)
    threads, per_thread = 6, 4
    inputs = [
        [rng.standard_normal((1, 3, 64, 64)).astype(np.float32) for _ in range(per_thread)] for _ in range(threads)
    ]
    results: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(threads)
    requests0, executions0 = _stats(server)

    def client(t: int) -> None:
        try:
            start.wait(timeout=30)
            for i, x in enumerate(inputs[t]):
                results[t, i] = _infer("http" if (t + i) % 2 else "grpc", server, x)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    pool = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=120)
    assert not errors, errors[0]
    assert len(results) == threads * per_thread
    for (t, i), got in results.items():
        want = runner.run({"image": inputs[t][i]})["logits"]
        assert max_rel_error(got, want) < SERVED_TOL
    requests, executions = _stats(server)
    assert requests - requests0 == threads * per_thread
    assert executions - executions0 < requests - requests0  # the dynamic batcher merged requests
    # and the artifact itself is the model: the reference interpreter on one of the inputs
    prov = runner.provenance
    graph, _ = build_graph(CompileRequest(path=RESNET, model=prov["model"], arguments=prov["arguments"], level=0))
    want = interpret(graph, {"image": inputs[0][0]})["logits"]
    assert max_rel_error(results[0, 0], want) < 1e-4


def test_a_batch_of_two_in_one_request(served):
    x = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)
    got = _infer("http", served["server"], x)
    assert max_rel_error(got, served["runner"].run({"image": x})["logits"]) < SERVED_TOL


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_wrong_shape_or_dtype_gets_tritons_error_and_serving_goes_on(served, protocol):
    from tritonclient.utils import InferenceServerException

    server = served["server"]
    with pytest.raises(InferenceServerException, match="unexpected shape"):
        _infer(protocol, server, np.zeros((1, 3, 32, 32), np.float32))
    if protocol == "http":
        import tritonclient.http as client
    else:
        import tritonclient.grpc as client
    c = client.InferenceServerClient(server.http_url.removeprefix("http://") if protocol == "http" else server.grpc_url)
    try:
        inp = client.InferInput("image", [1, 3, 64, 64], "FP64")
        inp.set_data_from_numpy(np.zeros((1, 3, 64, 64), np.float64))
        with pytest.raises(InferenceServerException, match="data-type is 'FP64'"):
            c.infer("r18", [inp])
    finally:
        c.close()
    x = np.random.default_rng(5).standard_normal((1, 3, 64, 64)).astype(np.float32)
    assert max_rel_error(_infer(protocol, server, x), served["runner"].run({"image": x})["logits"]) < SERVED_TOL


def test_a_version_exported_while_serving_is_picked_up(served):
    server = served["server"]
    assert export(served["artifact"], *served["flags"]) == 0
    assert os.path.isdir(os.path.join(served["repo"], "r18", "2"))
    _wait(lambda: any(m.get("version") == "2" and m.get("state") == "READY" for m in server.models()), 90, server)
    x = np.random.default_rng(11).standard_normal((1, 3, 64, 64)).astype(np.float32)
    got = _infer("grpc", server, x, version="2")
    assert max_rel_error(got, served["runner"].run({"image": x})["logits"]) < SERVED_TOL
