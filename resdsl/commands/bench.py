"""``resdsl bench``: measure artifacts side by side, or compile a model for several targets and measure those.

Progress goes to stderr, the report (a table, or ``--json``) to stdout, so
``resdsl bench ... --json > out.json`` stays clean while a long run shows life.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from resdsl.errors import ResdslError

from . import add_pass_args, compile_request, emit_options, nonnegative_int

DEFAULT_TARGETS = "onnx,onnx-ort,llvm"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark artifacts (or a model compiled for several targets) side by side",
        description="Measure latency (median, p10, p90) and throughput of artifacts on the same random inputs. "
        "Given a MODEL.py, compile it for each --target into a temporary directory first.",
    )
    p.add_argument("paths", nargs="+", metavar="ARTIFACT|MODEL.py", help=".onnx or .so artifacts, or model files")
    p.add_argument("--model", help="which @resdsl.model of a model file (needed when it has several)")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="argument of the model function")
    add_pass_args(p)
    p.add_argument(
        "--target",
        default=DEFAULT_TARGETS,
        help=f"comma-separated targets to compile a model file for (default {DEFAULT_TARGETS})",
    )
    p.add_argument("--batch", default="1", metavar="B[,B...]", help="comma-separated batch sizes (default 1)")
    p.add_argument("--repeat", type=int, default=20, help="timed runs per artifact and batch (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first, at least 1 (default 3)")
    p.add_argument("--max-seconds", type=float, metavar="S", help="cut repeats (to no fewer than 3) to fit S seconds")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="force a device (default: CUDA when present)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per artifact and batch")
    p.set_defaults(func=run)


def parse_batches(text: str) -> list[int]:
    """``"1,8,32"`` -> [1, 8, 32]; duplicates dropped, order kept."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            value = 0
        if value < 1:
            raise ResdslError(f"--batch {text!r}: {part!r} is not a positive integer", hint="e.g. --batch 1,8,32")
        if value not in out:
            out.append(value)
    if not out:
        raise ResdslError("--batch is empty", hint="e.g. --batch 1,8,32")
    return out


def parse_targets(text: str) -> list[str]:
    from resdsl.backends import resolve_target

    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ResdslError("--target is empty", hint=f"e.g. --target {DEFAULT_TARGETS}")
    resolved = []
    for name in names:
        target = resolve_target(name).name
        if target not in resolved:
            resolved.append(target)
    return resolved


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def compile_model(
    args: argparse.Namespace, path: str, targets: list[str], out_dir: str
) -> list[tuple[str, str, float]]:
    """Build ``path`` once, emit it for each target; returns (label, artifact path, compile seconds)."""
    from resdsl.backends import emit, resolve_target
    from resdsl.driver import build_graph

    req = compile_request(args, path)
    _say(f"bench: building {path} at -O{args.level}")
    t0 = time.perf_counter()
    graph, _ = build_graph(req)
    build_s = time.perf_counter() - t0
    stem = os.path.splitext(os.path.basename(path))[0]
    out = []
    for name in targets:
        target = resolve_target(name)
        artifact = os.path.join(out_dir, f"{stem}-{target.name}{target.extension}")
        _say(f"bench: compiling {graph.name} for {target.name}")
        t0 = time.perf_counter()
        emit(graph, artifact, emit_options(args, target.name, graph.meta["provenance"], batch=False))
        out.append((f"{os.path.basename(path)}[{target.name}]", artifact, build_s + time.perf_counter() - t0))
    return out


def run(args: argparse.Namespace) -> int:
    from resdsl.backends import open_artifact
    from resdsl.bench import Artifact, bench, describe, format_table, machine, today

    batches = parse_batches(args.batch)
    models = [p for p in args.paths if p.endswith(".py")]
    targets = parse_targets(args.target) if models else []
    for path in args.paths:
        if not os.path.exists(path):
            kind = "model file" if path.endswith(".py") else "artifact"
            raise ResdslError(f"{kind} {path!r} does not exist", hint="check the path")
    if args.repeat < 1 or args.warmup < 0:
        raise ResdslError(f"--repeat must be >= 1 and --warmup >= 0 (got {args.repeat}, {args.warmup})")
    with tempfile.TemporaryDirectory(prefix="resdsl-bench-") as tmp:
        entries: list[tuple[str, str, float | None]] = []
        for i, path in enumerate(args.paths):
            if path.endswith(".py"):
                out_dir = os.path.join(tmp, str(i))  # one folder per model file: equal stems cannot collide
                os.makedirs(out_dir)
                entries += compile_model(args, path, targets, out_dir)
            else:
                entries.append((path, path, None))
        artifacts = []
        for label, path, compile_s in entries:
            _say(f"bench: loading {label}")
            artifacts.append(Artifact(label, path, open_artifact(path, args.device), compile_s))
        results, notes = bench(artifacts, batches, args.repeat, args.warmup, args.seed, args.max_seconds, progress=_say)
    for note in notes:
        _say(f"note: {note}")
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
        return 0
    print(f"machine: {describe(machine())}; {today()}")
    print(f"warm-up {max(args.warmup, 1)}, up to {args.repeat} timed runs interleaved across artifacts; same inputs")
    print("'vs first' = first artifact's median / this one's (above 1: faster than the first)")
    print()
    print(format_table(results) if results else "no measurements: every batch size was skipped")
    return 0
