"""Load benchmark: resdsl artifacts served by Triton (Python backend) against the same artifact in-process.

    .venv/bin/python benchmarks/serve.py [--model resnet18] [--image-size 64] [--requests 16] [--clients 1,4,16]

One tritonserver (the nvidia-pytriton bundle, 127.0.0.1 only, free ports) serves the ONNX file and the
llvm module, each with and without dynamic batching. N client threads (gRPC, one connection each) send
batch-1 requests, a bounded number each; throughput counts requests per second over the wall time and
p50/p99 are per-request latencies. The in-process rows run the artifact directly from one thread: batch 1
(what a single client could get with no server) and one batch of 16 (the throughput ceiling of merging).
Every served response is checked against the in-process output. Prints a markdown table with the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from resdsl.cli import main as resdsl  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "resnet.py")


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, {platform.system()} {platform.release()}"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1e3, q))


def serve_load(server, model: str, clients: int, requests: int, x: np.ndarray, want: np.ndarray) -> tuple:
    import tritonclient.grpc as grpcclient

    latencies: list[float] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def client() -> None:
        c = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            inp = grpcclient.InferInput("image", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            c.infer(model, [inp])  # warm-up, outside the timing
            barrier.wait(timeout=120)
            for _ in range(requests):
                t = time.perf_counter()
                got = c.infer(model, [inp]).as_numpy("logits")
                latencies.append(time.perf_counter() - t)
                if np.abs(got - want).max() > 1e-5 * max(1.0, np.abs(want).max()):
                    raise AssertionError(f"{model}: served output differs from in-process")
        except BaseException as e:
            errors.append(e)
            barrier.abort()
        finally:
            c.close()

    pool = [threading.Thread(target=client) for _ in range(clients)]
    for th in pool:
        th.start()
    barrier.wait(timeout=300)
    t0 = time.perf_counter()
    for th in pool:
        th.join(timeout=600)
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return clients * requests / wall, pct(latencies, 50), pct(latencies, 99)


def in_process(runner, x: np.ndarray, requests: int) -> tuple:
    runner.run({"image": x})
    lat = []
    for _ in range(requests):
        t = time.perf_counter()
        runner.run({"image": x})
        lat.append(time.perf_counter() - t)
    batch = np.repeat(x, 16, axis=0)
    runner.run({"image": batch})
    t = time.perf_counter()
    runner.run({"image": batch})
    return len(lat) / sum(lat), pct(lat, 50), pct(lat, 99), 16 / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--requests", type=int, default=16, help="requests per client (default 16)")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--queue-delay-us", type=int, default=2000)
    args = ap.parse_args()
    from resdsl.backends import open_artifact

    from resdsl.serving.triton_server import TritonServer, free_port

    clients = [int(c) for c in args.clients.split(",")]
    work = tempfile.mkdtemp(prefix="resdsl-serve-bench-")
    repo = os.path.join(work, "models")
    artifacts = {}
    for label, target, ext in (("ONNX (ORT)", "onnx", "onnx"), ("TVM llvm", "llvm", "so")):
        path = os.path.join(work, f"{args.model}.{ext}")
        size = f"image_size={args.image_size}"
        if resdsl(["compile", EXAMPLE, "--model", args.model, "--arg", size, "--target", target, "-o", path]):
            return 1
        for batching in ("dyn", "nodyn"):
            flags = ["--repo", repo, "--name", f"{target}-{batching}", "--backend", "python", "--max-batch", "16"]
            flags += ["--queue-delay-us", str(args.queue_delay_us)]
            if batching == "nodyn":
                flags.append("--no-dynamic-batching")
            if resdsl(["export", "triton", path, *flags]):
                return 1
        artifacts[target] = (label, path)
    x = np.random.default_rng(0).standard_normal((1, 3, args.image_size, args.image_size)).astype(np.float32)
    rows = []
    server = TritonServer(repo, free_port(), free_port())
    try:
        server.start()
        for target, (label, path) in artifacts.items():
            runner = open_artifact(path, "cpu")
            want = runner.run({"image": x})["logits"]
            thr, p50, p99, ceiling = in_process(runner, x, args.requests)
            rows.append(f"| {label} | in-process, batch 1 | 1 | {thr:.1f} | {p50:.1f} | {p99:.1f} |")
            rows.append(f"| {label} | in-process, one batch of 16 | 1 | {ceiling:.1f} | | |")
            del runner
            for batching, name in (("dynamic batching", "dyn"), ("no batching", "nodyn")):
                for n in clients:
                    thr, p50, p99 = serve_load(server, f"{target}-{name}", n, args.requests, x, want)
                    rows.append(f"| {label} | Triton, {batching} | {n} | {thr:.1f} | {p50:.1f} | {p99:.1f} |")
                    print(rows[-1], file=sys.stderr, flush=True)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.model} {args.image_size}x{args.image_size}, batch-1 requests, {args.requests} per client, gRPC, ")
    print(f"Triton 2.51 Python backend, max queue delay {args.queue_delay_us} us; machine: {machine()}\n")
    print("| artifact | served by | clients | requests/s | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
