"""The resdsl benchmark suite: one table, each row a comparison measured side by side in one run.

    .venv/bin/python benchmarks/run.py [--quick] [--out FILE.md]     (or: make bench)

Sections: ONNX Runtime latency against ``torch.onnx.export`` of the same network
with the same weights and against resdsl -O0; TVM (``--target llvm``) against
ONNX Runtime on the CPU; int8 (resdsl's QDQ ONNX against ONNX Runtime's
``quantize_static``, in ORT, and resdsl's int8 TVM module against the latter; from
``quant.py``); float16 and bfloat16 TVM modules against float32 (from ``dtypes.py``);
compile time of each target; pass-pipeline cost per node at three depths; peak memory
of compiling and running (each in its own child process, read with ``os.wait4`` by a
small launcher); the GPU section. Ratios are always peer / resdsl, so above 1 means
resdsl is faster (or smaller); in the dtypes rows "resdsl" is the reduced dtype and
"peer" float32. ``--only int8,dtypes`` runs just those sections.

Compiling and exporting run in child processes (``run.py --child JSON``): their
peak memory is then theirs alone, and torch never shares a process with the
latency measurements. Nothing here is asserted; it is never part of the tests.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "examples")
RESNET = os.path.join(EXAMPLES, "resnet.py")
TRANSFORMER = os.path.join(EXAMPLES, "transformer.py")
PREACT = os.path.join(EXAMPLES, "preact_resnet.py")
GPU_CHECK = os.path.join(HERE, "gpu_check.py")
COMPILE_BUDGET_MIB = 4096
ROUNDS, REPS = 5, 5  # shuffled blocks for TVM against another runtime or dtype (cpu_common.block_medians)
SECTIONS = ("ort", "tvm", "int8", "dtypes", "compile", "passes", "memory", "gpu")  # --only's names
T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.0f} s] {msg}", file=sys.stderr, flush=True)


@dataclass
class Row:
    section: str
    what: str
    resdsl: str
    peer: str
    ratio: str
    note: str = ""


def fmt_ms(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1e3:.2f} s"


def ratio(peer: float | None, ours: float | None) -> str:
    return f"{peer / ours:.2f}" if peer and ours else "-"


# ---------------------------------------------------------------------------------------------
# Child processes: their own peak memory, and no torch in the measuring process


def child(task: dict, timeout: float = 600) -> tuple[dict, float]:
    """Run ``task`` in a fresh interpreter; returns its JSON answer and its peak RSS in MiB.

    Linux carries a spawning process's peak RSS over into the child's ``ru_maxrss``
    at exec (subprocess spawns with vfork), so a child of this big process would
    report at least our own peak. Hence two steps: a small launcher process
    (``--launch``) spawns the real child and reads exactly that child's rusage with
    ``os.wait4``. A failed child returns {"error": last stderr line}.
    """
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--launch", json.dumps(task)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        return {"error": (err[-1] if err else f"exit status {proc.returncode}")[:200]}, 0.0
    answer = json.loads(lines[-1])
    return answer["answer"], answer["rss_mib"]


def launch(task: dict) -> dict:
    """The launcher's side: run the child, relay its answer, add its own peak RSS."""
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", json.dumps(task)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        rss = usage.ru_maxrss / 1024  # KiB on Linux
        if proc.returncode != 0:
            err.seek(0)
            lines = [ln for ln in err.read().splitlines() if ln.strip()]
            answer = {"error": (lines[-1] if lines else f"exit status {proc.returncode}")[:200]}
            return {"answer": answer, "rss_mib": rss}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return {"answer": json.loads(lines[-1]) if lines else {"error": "no answer from child"}, "rss_mib": rss}


def run_child(task: dict) -> dict:
    """The child's side: compile, export from torch, or run an artifact."""
    kind = task["task"]
    if kind == "compile":
        from resdsl.backends import emit, make_options

        from resdsl.driver import CompileRequest, build_graph

        req = CompileRequest(
            path=task["file"], model=task["model"], arguments=task.get("args", {}), level=task.get("level", 2)
        )
        req.weights = task.get("weights")
        t0 = time.perf_counter()
        graph, _ = build_graph(req)
        if task.get("quantize"):  # as `resdsl compile --quantize QPARAMS.json` does it
            from resdsl.commands.compile import quantized

            graph = quantized(graph, task["quantize"], task["target"])
        t1 = time.perf_counter()
        emit(graph, task["out"], make_options(task["target"], provenance=graph.meta["provenance"]))
        return {"build_s": t1 - t0, "emit_s": time.perf_counter() - t1, "nodes": len(graph)}
    if kind == "torch_export":
        return torch_export(task)
    if kind == "int8_prepare":  # calibrate; write float32, resdsl int8 and ORT int8 ONNX files
        sys.path.insert(0, HERE)
        import quant as quant_bench

        return quant_bench.prepare(task["model"], task["dir"], task["calib"], weights=task["weights"])
    if kind == "dtypes":  # compile and time float32, float16, bfloat16 TVM modules side by side
        sys.path.insert(0, HERE)
        import dtypes

        rows = dtypes.compare(task["model"], 224, task["rounds"], task["repeats"], weights=task["weights"])
        return {"rows": rows}
    if kind == "run":
        import numpy as np
        from resdsl.backends import open_artifact

        from resdsl.bench import make_feeds

        runner = open_artifact(task["artifact"], "cpu")
        feeds = make_feeds(runner.inputs, task["batch"])
        for _ in range(task.get("runs", 3)):
            out = runner.run(feeds)
        return {"device": runner.device, "finite": bool(all(np.isfinite(v).all() for v in out.values()))}
    raise ValueError(f"unknown child task {kind!r}")


def torch_export(task: dict) -> dict:
    """Build the torch network, load resdsl's weights, check it against the interpreter, export it."""
    import numpy as np
    import torch

    sys.path.insert(0, HERE)
    import torch_peer

    import resdsl
    from resdsl.numerics import max_rel_error
    from resdsl.weights import load_weights_file, read_weights_file

    torch.set_num_threads(os.cpu_count() or 1)
    module, source = torch_peer.build(task["model"])
    torch_peer.load_weights(module, read_weights_file(task["weights"]))
    # The architecture does not depend on the image size: check at a small one, where the interpreter is quick.
    graph = resdsl.load(RESNET, task["model"], image_size=task["check_size"])
    load_weights_file(graph, task["weights"])
    feeds = resdsl.random_inputs(graph, batch=2, seed=7)
    want = resdsl.interpret(graph, feeds)["logits"]
    with torch.no_grad():
        got = module(torch.from_numpy(feeds["image"])).numpy()
    t0 = time.perf_counter()
    torch_peer.export(module, task["out"], task["image_size"])
    return {
        "source": source,
        "check_err": max_rel_error(got, want),
        "export_s": time.perf_counter() - t0,
        "torch": torch.__version__,
        "finite": bool(np.isfinite(got).all()),
    }


# ---------------------------------------------------------------------------------------------
# The suite


class Suite:
    def __init__(self, args: argparse.Namespace, tmp: str) -> None:
        self.args = args
        self.tmp = tmp
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.compiled: dict[tuple, dict] = {}  # (model, target, level) -> child answer + path + rss
        self.torch_ok = _importable("torch")

    def add(self, *fields: str, note: str = "") -> None:
        self.rows.append(Row(*fields, note=note))

    # -- artifacts -------------------------------------------------------------------------------

    def weights(self, model: str) -> str:
        """Random weights (with non-trivial BatchNorm statistics) shared by resdsl and the torch peer."""
        path = os.path.join(self.tmp, f"{model}.npz")
        if not os.path.exists(path):
            import numpy as np

            import resdsl
            from resdsl.weights import export_weights

            graph = resdsl.load(RESNET, model)
            rng = np.random.default_rng(0)
            new = {}
            for name, value in graph.state_dict().items():
                if name.endswith("running_var"):
                    new[name] = rng.uniform(0.5, 2.0, value.shape)
                elif name.endswith(("running_mean", ".bias")):
                    new[name] = rng.normal(0, 0.1, value.shape)
                elif name.endswith(".weight") and value.ndim == 1:
                    new[name] = rng.uniform(0.5, 1.5, value.shape)
            graph.load_weights(new, strict=False)
            export_weights(graph, path)
        return path

    def compile(
        self,
        model: str,
        target: str,
        level: int = 2,
        file: str = RESNET,
        weights: bool = True,
        quantize: str | None = None,
    ) -> dict:
        """Compile in a child process, once per (model, target, level); ``quantize``: a qparams file."""
        flavour = f"{target}-int8" if quantize else target
        key = (model, flavour, level)
        if key not in self.compiled:
            ext = ".onnx" if target.startswith("onnx") else ".so"
            out = os.path.join(self.tmp, f"{model}-{flavour}-O{level}{ext}")
            say(f"compile {model} for {flavour} at -O{level}")
            task = {"task": "compile", "file": file, "model": model, "target": target, "level": level, "out": out}
            if weights:
                task["weights"] = self.weights(model)
            if quantize:
                task["quantize"] = quantize
            answer, rss = child(task)
            answer.update(path=out, rss_mib=rss)
            if "error" in answer:
                say(f"  failed: {answer['error']}")
            self.compiled[key] = answer
        return self.compiled[key]

    def torch_onnx(self, model: str) -> dict | None:
        key = (model, "torch", 0)
        if key in self.compiled:
            return self.compiled[key]
        if not self.torch_ok:
            return None
        out = os.path.join(self.tmp, f"{model}-torch.onnx")
        say(f"torch.onnx.export {model}")
        task = {
            "task": "torch_export",
            "model": model,
            "weights": self.weights(model),
            "out": out,
            "image_size": 224,
            "check_size": 64,
        }
        answer, rss = child(task)
        answer.update(path=out, rss_mib=rss)
        if "error" in answer:
            self.notes.append(f"torch export of {model} failed: {answer['error']}")
        else:
            self.notes.append(
                f"{model} peer: {answer['source']}, torch {answer['torch']}, legacy TorchScript exporter, opset 17; "
                f"its output vs resdsl's interpreter (64x64, same weights): max rel. error {answer['check_err']:.1e}"
            )
        self.compiled[key] = answer
        return answer

    def measure(
        self, entries: list[tuple[str, str, bool]], batch: int, seconds: float, agree: bool = True
    ) -> dict[str, object]:
        """Bench (label, path, ort_optimize) side by side at one batch; returns label -> BenchResult.

        ``agree``: the entries compute the same function, so outputs that differ get a note
        (not so for int8 against float32, whose difference is in the notes as SQNR)."""
        from resdsl.backends import open_artifact
        from resdsl.backends.onnx.runner import OrtRunner

        from resdsl.bench import Artifact, bench

        arts = []
        for label, path, optimize in entries:
            runner = open_artifact(path, "cpu") if optimize else OrtRunner(path, "cpu", optimize=False)
            arts.append(Artifact(label, path, runner))
        repeat = self.args.repeat
        results, _ = bench(arts, [batch], repeat, warmup=2, max_seconds=seconds, progress=say)
        worst = max((r.max_rel_error_vs_first or 0.0) for r in results)
        if agree and worst > 1e-3:
            self.notes.append(f"outputs differ ({worst:.1e}) among {', '.join(e[0] for e in entries)} at batch {batch}")
        return {r.artifact: r for r in results}

    # -- sections --------------------------------------------------------------------------------

    def ort_latency(self, model: str, batches: tuple[int, ...]) -> None:
        section = "ORT latency"
        onnx2 = self.compile(model, "onnx")
        ort2 = self.compile(model, "onnx-ort")
        onnx0 = self.compile(model, "onnx", level=0)
        peer = self.torch_onnx(model)
        if peer is None:
            self.notes.append("torch is not importable: the torch.onnx.export rows are skipped")
        entries = [(f"{model} onnx -O2", onnx2["path"], True), (f"{model} onnx-ort -O2", ort2["path"], True)]
        entries.append((f"{model} onnx -O0", onnx0["path"], True))
        if peer and "error" not in peer:
            entries.append((f"{model} torch", peer["path"], True))
        entries = [e for e in entries if os.path.exists(e[1])]
        for batch in batches:
            say(f"ORT latency {model} batch {batch}")
            r = self.measure(entries, batch, self.args.seconds)
            t = r.get(f"{model} torch")
            for flavour in ("onnx", "onnx-ort"):
                ours = r.get(f"{model} {flavour} -O2")
                if ours is None:
                    continue
                if t is not None:
                    self.add(
                        section,
                        f"{model} b{batch}: resdsl {flavour} -O2 vs torch.onnx.export, in ORT",
                        fmt_ms(ours.median_ms),
                        fmt_ms(t.median_ms),
                        ratio(t.median_ms, ours.median_ms),
                        note=f"{ours.repeat} runs; p10-p90 {ours.p10_ms:.0f}-{ours.p90_ms:.0f} ms",
                    )
            o2, o0 = r.get(f"{model} onnx -O2"), r.get(f"{model} onnx -O0")
            if o2 and o0:
                self.add(
                    section,
                    f"{model} b{batch}: resdsl onnx -O2 vs -O0, ORT optimisations on",
                    fmt_ms(o2.median_ms),
                    fmt_ms(o0.median_ms),
                    ratio(o0.median_ms, o2.median_ms),
                    note="what our passes add on top of ORT's own fusions",
                )
        say(f"ORT latency {model}: -O0 vs -O2 with ORT optimisations off")
        r = self.measure(
            [(f"{model} -O2 raw", onnx2["path"], False), (f"{model} -O0 raw", onnx0["path"], False)], 1, 20
        )
        o2, o0 = r[f"{model} -O2 raw"], r[f"{model} -O0 raw"]
        self.add(
            section,
            f"{model} b1: resdsl onnx -O2 vs -O0, ORT optimisations off",
            fmt_ms(o2.median_ms),
            fmt_ms(o0.median_ms),
            ratio(o0.median_ms, o2.median_ms),
            note="what our passes buy on their own",
        )

    def tvm_latency(self, label: str, model: str, file: str, weights: bool) -> None:
        section = "TVM vs ORT (CPU)"
        tvm = self.compile(model, "llvm", file=file, weights=weights)
        ort = self.compile(model, "onnx-ort", file=file, weights=weights)
        if "error" in tvm or "error" in ort:
            self.add(
                section, f"{label} b1: resdsl llvm vs resdsl onnx-ort in ORT", "-", "-", "-", note="compile failed"
            )
            return
        say(f"TVM vs ORT {label}")
        r = self.measure([(f"{label} llvm", tvm["path"], True), (f"{label} onnx-ort", ort["path"], True)], 1, 60)
        ours, peer = r[f"{label} llvm"], r[f"{label} onnx-ort"]
        self.add(
            section,
            f"{label} b1: resdsl --target llvm (TVM) vs ONNX Runtime CPU (resdsl onnx-ort)",
            fmt_ms(ours.median_ms),
            fmt_ms(peer.median_ms),
            ratio(peer.median_ms, ours.median_ms),
            note=f"{ours.repeat} runs, default compile (Winograd, shipped tile book; no tuning)",
        )

    def int8_files(self, model: str) -> dict:
        """``benchmarks/quant.py``'s ``prepare`` in a child process, once per model: the float32,
        resdsl int8 and ORT int8 ONNX files, the qparams file, the SQNR of each int8 file."""
        key = (model, "int8-prepare", 2)
        if key not in self.compiled:
            say(f"int8: calibrate {model}, quantize_static")
            task = {"task": "int8_prepare", "model": model, "dir": self.tmp, "calib": 8, "weights": self.weights(model)}
            answer, _ = child(task)
            if "error" in answer:
                raise RuntimeError(f"int8 preparation of {model} failed: {answer['error']}")
            self.notes.append(
                f"int8 {model}: both int8 files quantize resdsl's float32 -O2 ONNX with the same 8 random "
                "calibration inputs (minmax, per-channel int8 weights, uint8 activations, QDQ); "
                f"calibration {answer['calib_s']:.1f} s (resdsl interpreter), quantize_static "
                f"{answer['ort_quantize_s']:.1f} s; SQNR vs float32 on 4 held-out inputs"
            )
            self.compiled[key] = answer
        return self.compiled[key]

    def int8(self, model: str, batches: tuple[int, ...]) -> None:
        section = "int8"
        prep = self.int8_files(model)
        paths, sq = prep["paths"], prep["sqnr_db"]
        entries = [
            (f"{model} resdsl int8", paths["resdsl"], True),
            (f"{model} ORT int8", paths["ort"], True),
            (f"{model} float32", paths["float32"], True),
        ]
        for batch in batches:
            say(f"int8 {model} batch {batch}")
            r = self.measure(entries, batch, self.args.seconds, agree=False)
            ours, peer, f32 = (r[e[0]] for e in entries)
            self.add(
                section,
                f"{model} b{batch}: resdsl int8 QDQ ONNX vs ORT quantize_static, in ORT",
                fmt_ms(ours.median_ms),
                fmt_ms(peer.median_ms),
                ratio(peer.median_ms, ours.median_ms),
                note=f"SQNR vs float32: resdsl {sq['resdsl']:.1f} dB, ORT {sq['ort']:.1f} dB; "
                f"float32 {fmt_ms(f32.median_ms)}; {ours.repeat} runs; p10-p90 {ours.p10_ms:.0f}-{ours.p90_ms:.0f} ms",
            )

    def int8_tvm(self, model: str) -> None:
        sys.path.insert(0, HERE)
        import quant as quant_bench

        section = "int8"
        prep = self.int8_files(model)
        tvm = self.compile(model, "llvm", quantize=prep["qparams"])
        what = f"{model} b1: resdsl --target llvm --quantize (TVM) vs ORT quantize_static in ORT"
        if "error" in tvm:
            self.add(section, what, "-", "-", "-", note=f"compile failed: {tvm['error']}")
            return
        say(f"int8 {model}: TVM llvm vs ORT quantize_static")
        labels = (f"{model} llvm int8", f"{model} ORT int8")
        ms, runners = self.blocks({labels[0]: tvm["path"], labels[1]: prep["paths"]["ort"]}, 1, ROUNDS, REPS)
        runner = runners[labels[0]]
        name = runner.inputs[0].name
        sq = quant_bench.held_out_sqnr(prep["held"], lambda x: next(iter(runner.run({name: x}).values())))
        self.add(
            section,
            what,
            fmt_ms(ms[labels[0]]),
            fmt_ms(ms[labels[1]]),
            ratio(ms[labels[1]], ms[labels[0]]),
            note=f"SQNR vs float32: TVM {sq:.1f} dB, ORT {prep['sqnr_db']['ort']:.1f} dB; median of {ROUNDS} "
            f"shuffled block medians of {REPS}; compile {tvm['build_s'] + tvm['emit_s']:.0f} s",
        )

    def blocks(self, paths: dict[str, str], batch: int, rounds: int, reps: int) -> tuple[dict[str, float], dict]:
        """Median ms of each artifact over ``rounds`` shuffled blocks of ``reps`` runs
        (``cpu_common.block_medians``), on the same input arrays; also returns the runners.

        Why blocks for TVM against ORT: run by run, on 2 cores, ORT's resnet18 int8 took
        16-20 ms right after each TVM run against 5 ms alone (the two runtimes' thread pools);
        in blocks, each opened by an untimed run, it took its 5 ms."""
        import numpy as np

        sys.path.insert(0, HERE)
        from cpu_common import block_medians
        from resdsl.backends import open_artifact

        from resdsl.bench import make_feeds

        runners = {label: open_artifact(path, "cpu") for label, path in paths.items()}
        cache: dict = {}
        feeds = {label: make_feeds(r.inputs, batch, 0, cache) for label, r in runners.items()}
        runs = {label: (lambda r=r, f=feeds[label]: r.run(f)) for label, r in runners.items()}
        for run in runs.values():
            run()
        medians = block_medians(runs, rounds, reps)
        return {label: 1e3 * float(np.median(v)) for label, v in medians.items()}, runners

    def dtypes(self, model: str) -> None:
        """``benchmarks/dtypes.py``'s ``compare`` in a child process: it compiles and times the
        three batch-1 modules side by side itself (shuffled blocks, ``cpu_common.block_medians``)."""
        section = "dtypes"
        rounds, repeats = ROUNDS, REPS
        say(f"dtypes {model}: compile and time float32, float16, bfloat16 (TVM llvm)")
        task = {"task": "dtypes", "model": model, "rounds": rounds, "repeats": repeats, "weights": self.weights(model)}
        answer, _ = child(task, timeout=1800)
        if "error" in answer:
            raise RuntimeError(f"dtypes {model} failed: {answer['error']}")
        f32, *reduced = answer["rows"]
        for r in reduced:
            self.add(
                section,
                f"{model} b1: TVM llvm {r['dtype']} vs float32",
                fmt_ms(r["ms"]),
                fmt_ms(f32["ms"]),
                ratio(f32["ms"], r["ms"]),
                note=f"max rel. error vs the {r['dtype']} interpreter {r['err']:.1e} (vs float32's {r['err_f32']:.1e}); "
                f"compile {r['compile_s']:.0f} s vs {f32['compile_s']:.0f} s; median of {rounds} block medians of {repeats}",
            )

    def compile_times(self, model: str) -> None:
        section = "compile time"
        peer = self.compiled.get((model, "torch", 0))
        for target in ("onnx", "onnx-ort", "llvm", "cuda"):
            c = self.compile(model, target)
            if "error" in c:
                self.add(section, f"{model} -> {target}", "-", "-", "-", note=f"failed: {c['error']}")
                continue
            total = c["build_s"] + c["emit_s"]
            peer_s = peer.get("export_s") if peer and target.startswith("onnx") else None
            what = f"{model} -> {target}" + (" vs torch.onnx.export" if peer_s else "")
            note = f"passes {c['build_s']:.1f} s + emit {c['emit_s']:.1f} s"
            if target == "cuda":
                note += "; codegen only, no GPU needed"
            self.add(
                section, what, f"{total:.1f} s", f"{peer_s:.1f} s" if peer_s else "-", ratio(peer_s, total), note=note
            )

    def pass_cost(self) -> None:
        from resdsl.passes import pipeline, run_passes

        from resdsl.loader import load_models

        section = "pass cost"
        nets = [("resnet50", RESNET, {}), ("resnet152", RESNET, {})]
        if os.path.exists(PREACT):
            nets.append(("preact_resnet1001", PREACT, {}))
        else:
            self.notes.append("examples/preact_resnet.py is missing: no 1001-layer row")
        names = pipeline(2)
        base = None
        for name, file, kwargs in nets:
            say(f"pass pipeline {name}")
            raw = load_models(file)[name].build(**kwargs)
            best = float("inf")
            for _ in range(2 if self.args.quick else 3):
                t0 = time.perf_counter()
                run_passes(raw, names)
                best = min(best, time.perf_counter() - t0)
            per_node = best * 1e3 / len(raw)
            base = base or per_node
            self.add(
                section,
                f"-O2 pipeline, ms per node: {name} ({len(raw)} nodes) vs resnet50",
                f"{per_node:.3f} ms",
                f"{base:.3f} ms",
                ratio(base, per_node),
                note=f"total {best:.2f} s, best of {2 if self.args.quick else 3}; ratio >= 1: no worse than linear in depth",
            )

    def memory(self) -> None:
        section = "peak memory"
        for target in ("onnx", "onnx-ort", "llvm", "cuda"):
            c = self.compile("resnet152", target)
            note = "fresh child process (ru_maxrss via os.wait4), imports included"
            if "error" in c:
                note = f"failed: {c['error']}"
            self.add(
                section,
                f"compile resnet152 -> {target} vs the 4 GiB budget",
                f"{c['rss_mib']:.0f} MiB",
                f"{COMPILE_BUDGET_MIB} MiB",
                ratio(COMPILE_BUDGET_MIB, c["rss_mib"]),
                note=note,
            )
        runs = {"onnx-ort": self.compile("resnet50", "onnx-ort"), "llvm": self.compile("resnet50", "llvm")}
        peer = self.compiled.get(("resnet50", "torch", 0))
        rss = {}
        for label, art in [*runs.items(), ("torch", peer)]:
            if art and "error" not in art and os.path.exists(art["path"]):
                say(f"memory: run resnet50 {label}")
                answer, rss[label] = child({"task": "run", "artifact": art["path"], "batch": 1, "runs": 3})
                if "error" in answer:
                    rss.pop(label)
                    self.notes.append(f"running resnet50 {label} failed: {answer['error']}")
        if "onnx-ort" in rss and "torch" in rss:
            self.add(
                section,
                "run resnet50 b1 in ORT: resdsl onnx-ort vs torch.onnx.export",
                f"{rss['onnx-ort']:.0f} MiB",
                f"{rss['torch']:.0f} MiB",
                ratio(rss["torch"], rss["onnx-ort"]),
                note="load + 3 runs in a fresh process",
            )
        if "llvm" in rss and "onnx-ort" in rss:
            self.add(
                section,
                "run resnet50 b1: resdsl llvm (TVM) vs resdsl onnx-ort (ORT)",
                f"{rss['llvm']:.0f} MiB",
                f"{rss['onnx-ort']:.0f} MiB",
                ratio(rss["onnx-ort"], rss["llvm"]),
                note="load + 3 runs in a fresh process",
            )

    def gpu(self) -> None:
        from resdsl.bench import gpu_name

        section = "GPU"
        name = gpu_name()
        if not name:
            self.add(section, "no GPU on this machine", "-", "-", "-")
            return
        if not os.path.exists(GPU_CHECK):
            self.add(section, f"{name}: benchmarks/gpu_check.py is missing", "-", "-", "-")
            return
        say("GPU: benchmarks/gpu_check.py")
        proc = subprocess.run([sys.executable, GPU_CHECK], capture_output=True, text=True, timeout=900)
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        status = "ok" if proc.returncode == 0 else f"exit status {proc.returncode}"
        self.add(section, f"{name}: benchmarks/gpu_check.py ({status})", "-", "-", "-", note="its output follows")
        self.gpu_output = lines


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _versions() -> str:
    out = []
    for dist in ("onnxruntime-gpu", "onnxruntime", "apache-tvm", "onnx", "numpy", "torch", "torchvision"):
        try:
            out.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(out)


def render(suite: Suite, elapsed: float) -> str:
    from resdsl.bench import describe, machine, today

    rows = [("section", "measurement", "resdsl", "peer", "peer/resdsl", "notes")]
    rows += [(r.section, r.what, r.resdsl, r.peer, r.ratio, r.note) for r in suite.rows]
    lines = [
        f"# resdsl benchmarks, {today()}",
        "",
        f"Machine: {describe(machine())}.  ",
        f"Software: {_versions()}.  ",
        "Ratio = peer / resdsl: above 1, resdsl is faster (or smaller). Each latency row is the median of runs "
        "interleaved with its peer's in the same process on the same input arrays, batch size in the row (bN).  ",
        f"Suite wall time: {elapsed / 60:.1f} min.",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join("---" for _ in rows[0]) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows[1:]]
    if suite.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in suite.notes]
    if getattr(suite, "gpu_output", None):
        lines += ["", "GPU check output:", "", "```", *suite.gpu_output[-40:], "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="resnet18 latency rows only, fewer repeats")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per latency row, at most (default 20)")
    parser.add_argument("--seconds", type=float, default=25, help="time budget per ORT latency group (default 25)")
    parser.add_argument("--out", help="markdown file (default benchmarks/results-<date>.md)")
    parser.add_argument("--only", metavar="S[,S...]", help=f"sections to run: {', '.join(SECTIONS)} (default all)")
    parser.add_argument("--launch", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.launch:
        print(json.dumps(launch(json.loads(args.launch))))
        return 0
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return 0
    if args.only:
        unknown = set(args.only.split(",")) - set(SECTIONS)
        if unknown:
            parser.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}; use {', '.join(SECTIONS)}")
    sys.path.insert(0, ROOT)
    from resdsl.bench import today

    with tempfile.TemporaryDirectory(prefix="resdsl-suite-") as tmp:
        suite = Suite(args, tmp)
        sections = [("ort", suite.ort_latency, ("resnet18", (1, 8)))]
        if not args.quick:
            sections += [
                ("ort", suite.ort_latency, ("resnet50", (1, 8))),
                ("tvm", suite.tvm_latency, ("resnet18 224x224", "resnet18", RESNET, True)),
                ("tvm", suite.tvm_latency, ("resnet50 224x224", "resnet50", RESNET, True)),
            ]
            if os.path.exists(TRANSFORMER):
                sections.append(
                    ("tvm", suite.tvm_latency, ("ViT-Ti/16 (examples/transformer.py vit)", "vit", TRANSFORMER, False))
                )
            else:
                suite.notes.append("examples/transformer.py is missing: no transformer row")
            sections += [
                ("int8", suite.int8, ("resnet18", (1, 8))),
                ("int8", suite.int8, ("resnet50", (1, 8))),
                ("int8", suite.int8_tvm, ("resnet18",)),
                ("int8", suite.int8_tvm, ("resnet50",)),
                ("dtypes", suite.dtypes, ("resnet18",)),
                ("dtypes", suite.dtypes, ("resnet50",)),
                ("compile", suite.compile_times, ("resnet50",)),
                ("passes", suite.pass_cost, ()),
                ("memory", suite.memory, ()),
            ]
        sections.append(("gpu", suite.gpu, ()))
        if args.only:
            wanted = set(args.only.split(","))
            sections = [s for s in sections if s[0] in wanted]
        for name, fn, fn_args in sections:
            try:
                fn(*fn_args)
            except Exception as e:  # one broken section must not cost the others' minutes
                say(f"{name} failed: {type(e).__name__}: {e}")
                what = f"{fn_args[0]}: section failed" if fn_args else "section failed"
                suite.add(name, what, "-", "-", "-", note=f"{type(e).__name__}: {e}")
        text = render(suite, time.perf_counter() - T0)
    out = args.out or os.path.join(HERE, f"results-{today()}.md")
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(out + ".tmp", out)
    print(text)
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
