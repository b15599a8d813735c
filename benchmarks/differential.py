"""Differential testing at scale: random residual networks through every executor.

Hypothesis draws networks from ``tests/strategies.wide_net_specs`` (every block kind,
shortcut option A/B/C, residual scaling, every op of the registry, odd sizes, batch 1-4,
an -O level). Each network gets random weights and is run by

- ``interp``: the reference interpreter on the canonical graph (the expected outputs),
- ``interp-opt``: the interpreter on the graph after the -O level's passes,
- ``onnx`` and ``onnx-ort``: both ONNX flavours in ONNX Runtime, its optimisations on,
- ``llvm``: TVM for the CPU, for ``--tvm-percent`` of the networks (a TVM compile takes
  seconds where the rest takes tens of milliseconds),

and every output must equal the reference (max relative error < 1e-4, shapes equal).
A failure is shrunk by hypothesis and printed as a reproducer (a ``NetSpec`` literal);
``--save`` appends it to tests/test_differential_regressions.py. A failure whose
signature was already found is counted without being shrunk again.

    python benchmarks/differential.py --minutes 60        # make fuzz
    python benchmarks/differential.py --count 200 --tvm-percent 0
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from helpers import randomize  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402
from strategies import Block, NetSpec, build, wide_net_specs  # noqa: E402, F401  (Block: reproducers)

import resdsl  # noqa: E402
from resdsl.numerics import TOLERANCE, max_rel_error  # noqa: E402

EXECUTORS = ("interp", "interp-opt", "onnx", "onnx-ort", "llvm")
_SERIAL = itertools.count()
REGRESSIONS = os.path.join(ROOT, "tests", "test_differential_regressions.py")


class Disagreement(Exception):
    """One executor's outputs differ from the reference, or it failed where the reference ran."""

    def __init__(self, executor: str, detail: str) -> None:
        self.executor, self.detail = executor, detail
        super().__init__(f"{executor}: {detail}")

    @property
    def signature(self) -> str:
        """The failure without its numbers, so that one bug is one entry however often it recurs."""
        return re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "#", str(self).splitlines()[0])[:160]


def _compare(executor: str, got: dict, want: dict) -> None:
    if set(got) != set(want):
        raise Disagreement(executor, f"outputs {sorted(got)} where the reference has {sorted(want)}")
    for name, w in want.items():
        if got[name].shape != w.shape:
            raise Disagreement(executor, f"{name}: shape {got[name].shape} where the reference has {w.shape}")
        err = max_rel_error(got[name], w)
        if not err < TOLERANCE:
            raise Disagreement(executor, f"{name}: max relative error {err:.2e} >= {TOLERANCE:.0e}")


def _guard(executor: str, fn):
    """Run one executor; a crash is a disagreement of that executor."""
    try:
        return fn()
    except Disagreement:
        raise
    except Exception as e:  # noqa: BLE001 - any crash of an executor is a finding
        first = (str(e).strip().splitlines() or [""])[0]
        raise Disagreement(executor, f"{type(e).__name__}: {first[:300]}") from e


def run_network(spec: NetSpec, workdir: str, tvm: bool = False, ran: Counter | None = None) -> None:
    """Build ``spec``, run it through every executor and raise Disagreement at the first that differs."""
    from resdsl.backends import emit, make_options, open_artifact
    from resdsl.passes import PassOptions, pipeline, run_passes

    ran = ran if ran is not None else Counter()
    options = PassOptions(shortcut=spec.shortcut, residual_scale=spec.residual_scale)

    def reference():
        canonical = randomize(run_passes(build(spec), ["shortcuts"], options, verify=True).graph, seed=3)
        scaled = canonical
        if spec.residual_scale:
            scaled = run_passes(canonical, ["scale_residuals"], options, verify=True).graph
        feeds = resdsl.random_inputs(canonical, spec.batch, seed=5)
        return canonical, feeds, resdsl.interpret(scaled, feeds)

    canonical, feeds, want = _guard("interp", reference)
    ran["interp"] += 1
    optimised = _guard(
        "interp-opt", lambda: run_passes(canonical, pipeline(spec.level, options), options, verify=True).graph
    )
    _compare("interp-opt", _guard("interp-opt", lambda: resdsl.interpret(optimised, feeds)), want)
    ran["interp-opt"] += 1
    targets = [("onnx", ".onnx"), ("onnx-ort", ".onnx")] + ([("llvm", ".so")] if tvm else [])
    serial = next(_SERIAL)  # a fresh file each time: dlopen of a path already loaded returns the old library
    for target, ext in targets:
        path = os.path.join(workdir, f"net{serial}-{target}{ext}")

        def execute(target=target, path=path):
            files = emit(optimised, path, make_options(target))
            try:
                return open_artifact(path, "cpu").run(feeds)
            finally:
                for f in files:
                    os.remove(f)

        _compare(target, _guard(target, execute), want)
        ran[target] += 1


@dataclass
class Campaign:
    count: int | None
    minutes: float | None
    tvm_percent: float
    save: bool
    seed: int
    started: float = field(default_factory=time.monotonic)
    networks: int = 0
    ran: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    known: dict[str, tuple[NetSpec, bool, int]] = field(default_factory=dict)  # signature -> (spec, tvm, times)
    last_progress: float = 0.0

    def finished(self) -> bool:
        if self.count is not None and self.networks >= self.count:
            return True
        return self.minutes is not None and time.monotonic() - self.started >= 60 * self.minutes

    def rate(self) -> float:
        return 3600 * self.networks / max(time.monotonic() - self.started, 1e-9)

    def progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_progress < 30:
            return
        self.last_progress = now
        runs = ", ".join(f"{e} {self.ran[e]}" for e in EXECUTORS)
        print(
            f"[{(now - self.started) / 60:5.1f} min] {self.networks} networks ({self.rate():,.0f}/h): {runs}; "
            f"failures {sum(self.failed.values())} ({len(self.known)} distinct)",
            flush=True,
        )


def _round(c: Campaign, workdir: str, round_seed: int) -> tuple[NetSpec, bool, Disagreement] | None:
    """One hypothesis run of 200 networks, ended early by the budget or by a new failure (then shrunk)."""
    state: dict = {"failing": False, "last": None}

    @settings(
        max_examples=200,  # a round; the campaign runs rounds with fresh seeds until its budget is spent
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
    )
    @hypothesis_seed(round_seed)
    @given(wide_net_specs())
    def network(spec: NetSpec) -> None:
        if state["failing"]:  # shrinking, on the failing network's executors: run, never count
            tvm = state["last"][1]
            try:
                run_network(spec, workdir, tvm)
            except Disagreement as e:
                if e.signature == state["signature"]:
                    state["last"] = (spec, tvm, e)
                    raise
            return
        if c.finished():
            return
        c.networks += 1
        p = c.tvm_percent / 100  # exactly that share of the networks, spread evenly
        tvm = int(c.networks * p) > int((c.networks - 1) * p)
        try:
            run_network(spec, workdir, tvm, c.ran)
        except Disagreement as e:
            c.failed[e.executor] += 1
            if e.signature in c.known:
                s, t, n = c.known[e.signature]
                c.known[e.signature] = (s, t, n + 1)
                return
            state.update(failing=True, signature=e.signature, last=(spec, tvm, e))
            print(f"found: {e}\n  shrinking ...", flush=True)
            raise
        finally:
            c.progress()

    try:
        network()
    except Disagreement:
        return state["last"]
    return None


def reproducer(spec: NetSpec, tvm: bool) -> str:
    return f"CASES.append(({spec!r}, {tvm}))"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, help="stop after this many networks")
    ap.add_argument("--minutes", type=float, help="stop after this many minutes (default 10 if no --count)")
    ap.add_argument("--tvm-percent", type=float, default=2.0, help="percent of networks also run by TVM llvm")
    ap.add_argument("--seed", type=int, default=0, help="hypothesis seed of the first round")
    ap.add_argument("--save", action="store_true", help=f"append new failures to {os.path.relpath(REGRESSIONS)}")
    args = ap.parse_args(argv)
    if args.count is None and args.minutes is None:
        args.minutes = 10.0
    c = Campaign(args.count, args.minutes, args.tvm_percent, args.save, args.seed)
    print(
        f"differential: {args.count or 'unbounded'} networks, {args.minutes or 'no'} minute budget, "
        f"TVM llvm on {args.tvm_percent:g}% of them; executors {', '.join(EXECUTORS)}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="resdsl-diff-") as workdir:
        round_seed = args.seed
        while not c.finished():
            found = _round(c, workdir, round_seed)
            round_seed += 1
            if found is None:
                continue
            spec, tvm, e = found
            c.known[e.signature] = (spec, tvm, c.known.get(e.signature, (spec, tvm, 0))[2] + 1)
            print(f"FAILURE (shrunk): {e}\n  reproducer: {reproducer(spec, tvm)}", flush=True)
            if args.save:
                with open(REGRESSIONS, "a") as f:
                    f.write(f"# {e.signature}\n{reproducer(spec, tvm)}\n")
    c.progress(force=True)
    minutes = (time.monotonic() - c.started) / 60
    print(f"\nsummary: {c.networks} networks in {minutes:.1f} min ({c.rate():,.0f} networks/hour)")
    print(f"{'executor':<12}{'passed':>8}{'failed':>8}")
    for e in EXECUTORS:
        print(f"{e:<12}{c.ran[e]:>8}{c.failed[e]:>8}")
    for sig, (spec, tvm, n) in c.known.items():
        print(f"\n{n}x {sig}\n  {reproducer(spec, tvm)}")
    return 1 if c.known else 0


if __name__ == "__main__":
    sys.exit(main())
