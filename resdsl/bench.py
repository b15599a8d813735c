"""Measuring artifacts: warm-up, interleaved repeats, robust statistics, and the machine they ran on.

Why interleave: on a shared machine, load and clock frequency drift over seconds.
Running all of artifact A's repeats and then all of B's would charge that drift to
one of them. Instead each round runs every artifact once, in an order that rotates
from round to round, so drift and cache effects hit all alike; the median with
p10/p90 then shrugs off the outliers that remain. Every artifact gets the very same
input arrays, and its outputs are compared with the first artifact's, so a speed
ratio is never quoted between programs that compute different things.

Nothing here imports onnxruntime or tvm: artifacts are opened through
``resdsl.backends.open_artifact`` by the caller.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import ResdslError
from .numerics import max_rel_error


@dataclass(frozen=True)
class Stats:
    """Latency statistics of one artifact at one batch size, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    n: int


def summarize(times_s: Sequence[float]) -> Stats:
    """Median and 10th/90th percentiles (linear interpolation, as numpy) of run times in seconds."""
    if len(times_s) == 0:
        raise ValueError("no timings to summarize")
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    p10, median, p90 = np.percentile(ms, [10, 50, 90])
    return Stats(float(median), float(p10), float(p90), len(ms))


def throughput(batch: int, median_ms: float) -> float:
    """Samples per second at the median latency."""
    return batch * 1e3 / median_ms if median_ms > 0 else float("inf")


def measure(
    runs: Sequence[Callable[[], object]],
    repeat: int,
    warmup: int = 1,
    max_seconds: float | None = None,
    min_repeat: int = 3,
    clock: Callable[[], float] = time.perf_counter,
    settle_s: float = 0.05,
) -> list[list[float]]:
    """Time each callable ``repeat`` times, interleaved round by round; returns seconds per callable.

    Warm-up rounds (untimed) come first, also interleaved. Between two different
    artifacts the loop sleeps ``settle_s``: ONNX Runtime's and TVM's worker threads
    spin for a while after a run, and on a 2-core machine the spinning pool of one
    runtime stole the cores of the next (TVM measured 2.4x slower right after ORT).
    With ``max_seconds``, the
    first timed round predicts the cost of a round and the repeats are cut to fit
    (never below ``min_repeat``), so slow artifacts cannot stall a long suite.
    """
    if repeat < 1 or warmup < 0:
        raise ValueError("repeat must be >= 1 and warmup >= 0")
    k = len(runs)
    for _ in range(warmup):
        for run in runs:
            run()
    times: list[list[float]] = [[] for _ in runs]
    r = 0
    while r < repeat:
        t_round = clock()
        for j in range(k):
            i = (r + j) % k  # rotate who goes first, so no artifact always follows the same one
            if k > 1 and settle_s:
                time.sleep(settle_s)
            t0 = clock()
            runs[i]()
            times[i].append(clock() - t0)
        if r == 0 and max_seconds is not None:
            round_cost = clock() - t_round
            affordable = int(max_seconds / round_cost) if round_cost > 0 else repeat
            repeat = min(repeat, max(min_repeat, affordable))
        r += 1
    return times


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU model, cores, memory, GPU, OS and Python."""
    cores = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = cores
    return {
        "cpu": _cpu_model(),
        "cores": cores,
        "usable_cores": usable,
        "memory_gib": _memory_gib(),
        "gpu": gpu_name(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def describe(m: dict[str, Any]) -> str:
    """One line for a table header."""
    mem = f", {m['memory_gib']:.1f} GiB RAM" if m.get("memory_gib") else ""
    gpu = m.get("gpu") or "no GPU"
    return f"{m['cpu']}, {m['cores']} cores{mem}, {gpu}; {m['os']}, Python {m['python']}"


def today() -> str:
    return datetime.date.today().isoformat()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return None


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name and memory per nvidia-smi, or None without one (or without the tool)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
    if out.returncode != 0 or not lines:
        return None
    more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
    return lines[0] + more


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident memory so far of this process (or of its waited-for children), in MiB.

    Linux reports ru_maxrss in KiB, macOS in bytes.
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 1024
    return usage.ru_maxrss * scale


# ---------------------------------------------------------------------------------------------
# Artifacts


@dataclass
class Artifact:
    """An opened artifact and how to name it in a report."""

    label: str
    path: str
    runner: Any  # resdsl.backends.Runner
    compile_s: float | None = None

    @property
    def target(self) -> str:
        return artifact_target(self.runner)

    @property
    def batch(self) -> int | None:
        return fixed_batch(self.runner)


def artifact_target(runner: Any) -> str:
    """The target an artifact was compiled for: from the TVM sidecar or the ONNX metadata."""
    meta = getattr(runner, "meta", None)
    if isinstance(meta, dict) and isinstance(meta.get("target"), dict):
        return str(meta["target"].get("kind", "tvm"))
    session = getattr(runner, "session", None)
    if session is not None:
        model_meta = session.get_modelmeta()
        flavour = model_meta.custom_metadata_map.get("resdsl.flavour")
        return flavour or f"onnx ({model_meta.producer_name or 'foreign'})"
    return type(runner).__name__


def fixed_batch(runner: Any) -> int | None:
    """The batch size an artifact is limited to, or None when its batch is symbolic.

    TVM sidecars record ``batch``; otherwise an artifact whose inputs all have an
    integer leading dimension can only run that batch.
    """
    meta = getattr(runner, "meta", None)
    if isinstance(meta, dict) and meta.get("batch") is not None:
        return int(meta["batch"])
    leading = {spec.shape[0] for spec in runner.inputs if spec.shape}
    if leading and all(isinstance(d, int) for d in leading):
        return next(iter(leading)) if len(leading) == 1 else None
    return None


def make_feeds(specs: Sequence[Any], batch: int, seed: int = 0, cache: dict | None = None) -> dict[str, np.ndarray]:
    """Random normal inputs for ``specs`` at ``batch``; the same (name, shape, dtype) always gets the
    same array, so several artifacts measured together see identical inputs."""
    cache = {} if cache is None else cache
    feeds = {}
    for spec in specs:
        shape = tuple(d if isinstance(d, int) else batch for d in spec.shape)
        key = (spec.name, shape, spec.dtype)
        if key not in cache:
            rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode()), batch])
            cache[key] = rng.standard_normal(shape).astype(spec.dtype)
        feeds[spec.name] = cache[key]
    return feeds


@dataclass
class BenchResult:
    """One artifact at one batch size; ``to_json`` is the ``resdsl bench --json`` record."""

    artifact: str
    path: str
    target: str
    batch: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    throughput: float
    device: str
    repeat: int
    warmup: int
    machine: dict[str, Any]
    peak_rss_mib: float
    compile_s: float | None = None
    max_rel_error_vs_first: float | None = None  # outputs against the first artifact's, same inputs

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _agreement(first: dict[str, np.ndarray] | None, outputs: dict[str, np.ndarray]) -> float | None:
    if first is None or set(first) != set(outputs):
        return None
    if any(first[k].shape != outputs[k].shape for k in first):
        return None
    return max(max_rel_error(outputs[k], first[k]) for k in first)


def bench(
    artifacts: Sequence[Artifact],
    batches: Sequence[int],
    repeat: int = 20,
    warmup: int = 3,
    seed: int = 0,
    max_seconds: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[BenchResult], list[str]]:
    """Measure ``artifacts`` side by side at each batch size; returns the results and notes.

    Artifacts compiled for a fixed batch skip the other sizes (with a note). Each
    artifact's first run is untimed: its outputs are compared with the first
    artifact's, and it counts as one of the ``warmup`` runs (so there is always one).
    """
    if not artifacts:
        raise ResdslError("nothing to benchmark", hint="give artifacts or a model file")
    if repeat < 1 or warmup < 0:
        raise ResdslError(f"--repeat must be >= 1 and --warmup >= 0 (got {repeat}, {warmup})")
    say = progress or (lambda _msg: None)
    host = machine()
    results: list[BenchResult] = []
    notes: list[str] = []
    for batch in batches:
        active = []
        for a in artifacts:
            fixed = a.batch
            if fixed is not None and fixed != batch:
                notes.append(f"{a.label}: compiled for batch {fixed} only, batch {batch} skipped")
            else:
                active.append(a)
        if not active:
            continue
        cache: dict = {}
        feeds = [make_feeds(a.runner.inputs, batch, seed, cache) for a in active]
        say(f"bench: batch {batch}: checking outputs of {len(active)} artifact(s)")
        outputs = [a.runner.run(f) for a, f in zip(active, feeds)]  # first run: also a warm-up
        runs = [lambda a=a, f=f: a.runner.run(f) for a, f in zip(active, feeds)]
        say(f"bench: batch {batch}: {max(warmup - 1, 0)} more warm-up + up to {repeat} timed round(s)")
        times = measure(runs, repeat, max(warmup - 1, 0), max_seconds)
        for a, t, out in zip(active, times, outputs):
            s = summarize(t)
            results.append(
                BenchResult(
                    artifact=a.label,
                    path=a.path,
                    target=a.target,
                    batch=batch,
                    median_ms=s.median_ms,
                    p10_ms=s.p10_ms,
                    p90_ms=s.p90_ms,
                    throughput=throughput(batch, s.median_ms),
                    device=a.runner.device,
                    repeat=s.n,
                    warmup=max(warmup, 1),
                    machine=host,
                    peak_rss_mib=peak_rss_mib(),
                    compile_s=a.compile_s,
                    max_rel_error_vs_first=None if a is active[0] else _agreement(outputs[0], out),
                )
            )
            say(f"bench: batch {batch}: {a.label}: median {s.median_ms:.2f} ms over {s.n} runs")
    return results, notes


def format_table(results: Sequence[BenchResult]) -> str:
    """The human-readable report: one row per artifact and batch; 'vs first' = first's median / this one's."""
    header = ("artifact", "target", "batch", "median ms", "p10 ms", "p90 ms", "samples/s", "vs first", "err vs first")
    rows = [header]
    first_at: dict[int, float] = {}
    for r in results:
        base = first_at.setdefault(r.batch, r.median_ms)
        err = "-" if r.max_rel_error_vs_first is None else f"{r.max_rel_error_vs_first:.1e}"
        rows.append(
            (
                r.artifact,
                r.target,
                str(r.batch),
                f"{r.median_ms:.3f}",
                f"{r.p10_ms:.3f}",
                f"{r.p90_ms:.3f}",
                f"{r.throughput:.1f}",
                f"{base / r.median_ms:.2f}x" if r.median_ms > 0 else "-",
                err,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    left = {0, 1}
    lines = []
    for row in rows:
        cells = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    devices = sorted({f"{r.artifact}: {r.device}" for r in results})
    return "\n".join(lines + [""] + [f"device {d}" for d in devices])
