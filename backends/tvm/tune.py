"""MetaSchedule tuning of a compiled model's kernels into a reusable JSON database.

``tune`` extracts the distinct kernels (tasks) of the model's fused Relax module
(``pipeline.fused_passes``: the very module the compiler later schedules), and
first measures resdsl's own schedule of each one and commits it as a tuning
record. MetaSchedule then searches its own space and the database keeps, per
kernel, the fastest schedule measured: a short tuning run can only make a
kernel faster than the untuned compile, never slower. ``resdsl compile --db DIR``
applies the records after FuseTIR (``MetaScheduleApplyDatabase``); kernels without
a record keep resdsl's rules.

Why 2 build workers and a 120 s build timeout: on a 2-core machine the default
(one worker per core, 30 s) killed every candidate of a batch before it linked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from resdsl.errors import ResdslError
from resdsl.ir import Graph

from .errors import tvm_error_line
from .pipeline import cpu_rules, fused_module
from .target import lanes_of, vnni_lanes

BUILD_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 60.0


@dataclass
class TaskResult:
    name: str
    weight: int  # how many times the model calls this kernel
    rule_ms: float | None = None  # resdsl's own schedule
    best_ms: float | None = None  # the best the database holds after tuning
    trials: int = 0


@dataclass
class TuneReport:
    db: str
    tasks: list[TaskResult] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        rows = [f"{'kernel':<44} {'calls':>5} {'trials':>6} {'resdsl ms':>10} {'tuned ms':>9}"]
        for t in self.tasks:
            rule = f"{t.rule_ms:.3f}" if t.rule_ms is not None else "-"
            best = f"{t.best_ms:.3f}" if t.best_ms is not None else "-"
            rows.append(f"{t.name[:44]:<44} {t.weight:>5} {t.trials:>6} {rule:>10} {best:>9}")
        return "\n".join(rows)


def check_tuning_deps() -> None:
    """MetaSchedule imports these lazily, deep inside a worker; say what to install up front."""
    import importlib.util

    missing = [m for m in ("psutil", "xgboost", "cloudpickle", "tornado") if importlib.util.find_spec(m) is None]
    if missing:
        raise ResdslError(
            f"tuning needs {', '.join(missing)}", hint="pip install 'resdsl[tune]' (psutil xgboost cloudpickle tornado)"
        )


def extract_tasks(mod, target) -> list:
    """The distinct kernels of ``mod`` (MetaSchedule ExtractedTask), most called first."""
    from tvm.s_tir import meta_schedule as ms

    tasks = ms.relax_integration.extract_tasks(mod, target)
    return sorted(tasks, key=lambda t: -int(t.weight))


def tune(
    graph: Graph,
    tdict: dict[str, Any],
    trials: int,
    db_dir: str,
    batch: int = 1,
    progress: Callable[[str], None] = print,
) -> TuneReport:
    """Tune ``graph``'s kernels for ``trials`` measured candidates in all; records go to ``db_dir``."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    check_tuning_deps()
    if trials < 0:
        raise ResdslError(f"--trials must be >= 0, got {trials}")
    target = tvm.target.Target(tdict)
    if target.kind.name == "cuda" and not tvm.cuda(0).exist:
        raise ResdslError(
            "tuning for cuda measures kernels on a GPU, and this machine has none", hint="tune on the GPU machine"
        )
    t0 = time.perf_counter()
    os.makedirs(db_dir, exist_ok=True)
    extracted = extract_tasks(fused_module(graph, target, batch), target)
    if not extracted:
        raise ResdslError(f"model {graph.name!r} has no kernels to tune")
    progress(f"tuning {len(extracted)} kernels of {graph.name} for {target.kind.name} ({trials} trials) into {db_dir}")
    database = ms.database.JSONDatabase(work_dir=db_dir)
    builder = ms.builder.LocalBuilder(max_workers=min(2, os.cpu_count() or 1), timeout_sec=BUILD_TIMEOUT_S)
    runner = ms.runner.LocalRunner(timeout_sec=RUN_TIMEOUT_S)
    report = TuneReport(db_dir, [TaskResult(t.task_name, int(t.weight)) for t in extracted])
    try:
        _seed_with_rules(extracted, report, target, database, builder, runner, progress)
        if trials > 0:
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                extracted,
                work_dir=db_dir,
                # Not seeded from the database: MetaSchedule's RewriteLayout cannot be
                # replayed over resdsl's own (already repacked) records.
                strategy=ms.search_strategy.EvolutionarySearch(init_measured_ratio=0.0),
                num_threads=min(2, os.cpu_count() or 1),
            )
            ms.tune.tune_tasks(
                tasks=contexts,
                task_weights=weights,
                work_dir=db_dir,
                max_trials_global=trials,
                num_trials_per_iter=min(trials, 16),
                builder=builder,
                runner=runner,
                database=database,
                measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), _progress(report, progress)],
            )
    except ResdslError:
        raise
    except Exception as e:
        raise ResdslError(f"tuning failed: {tvm_error_line(e)}", hint="rerun with --debug for the TVM traceback") from e
    for task, result in zip(extracted, report.tasks):
        best = database.query_tuning_record(task.dispatched[0], target, task.task_name)
        if best is not None and best.run_secs:
            result.best_ms = _ms(best.run_secs)
    report.seconds = time.perf_counter() - t0
    return report


def _ms(run_secs) -> float:
    values = [float(s) for s in run_secs]
    return 1e3 * sum(values) / len(values)


def _seed_with_rules(extracted, report: TuneReport, target, database, builder, runner, progress) -> None:
    """Measure resdsl's own schedule of every kernel and commit it as the first record.

    One build batch and one run batch for all kernels: each batch pays the worker
    pool's start-up (seconds on 2 cores) once.
    """
    from tvm.s_tir import meta_schedule as ms

    rules = (
        cpu_rules(lanes_of(target), int8_lanes=vnni_lanes(dict(target.export()))) if target.kind.name == "llvm" else []
    )
    device = "cpu" if target.kind.name == "llvm" else target.kind.name
    seeds = []  # (task index, schedule, arg info)
    for i, task in enumerate(extracted):
        func = task.dispatched[0]["main"]
        sch = next((s for s in (r.apply(func, target, False) for r in rules) if s is not None), None)
        if sch is not None:  # measured as MetaSchedule measures: weights already repacked
            seeds.append((i, sch, ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)))
    if not seeds:
        return
    progress(f"measuring resdsl's own schedules of {len(seeds)} kernels")
    built = builder.build([ms.builder.BuilderInput(sch.mod, target) for _, sch, _ in seeds])
    ok = [(seed, b) for seed, b in zip(seeds, built) if not b.error_msg]
    futures = runner.run([ms.runner.RunnerInput(b.artifact_path, device, seed[2]) for seed, b in ok])
    for ((i, sch, args), _), future in zip(ok, futures):
        ran = future.result()
        task, result = extracted[i], report.tasks[i]
        if ran.error_msg or not ran.run_secs:
            progress(f"  {task.task_name}: resdsl schedule failed to run: {ran.error_msg.splitlines()[-1]}")
            continue
        workload = database.commit_workload(task.dispatched[0])
        database.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, ran.run_secs, target, args))
        result.rule_ms = _ms(ran.run_secs)
        progress(f"  {task.task_name} x{result.weight}: resdsl schedule {result.rule_ms:.3f} ms")


def _progress(report: TuneReport, progress: Callable[[str], None]):
    """A measure callback printing one line per measured batch: kernel, trials, best time."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class Progress(PyMeasureCallback):
        def __init__(self) -> None:
            self.done = 0

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
            result = report.tasks[task_id]
            result.trials += len(runner_results)
            self.done += len(runner_results)
            times = [_ms(r.run_secs) for r in runner_results if r.run_secs and not r.error_msg]
            if times:
                result.best_ms = min([t for t in (result.best_ms, min(times)) if t is not None])
            best = f"{result.best_ms:.3f} ms" if result.best_ms is not None else "no valid candidate yet"
            rule = f" (resdsl {result.rule_ms:.3f} ms)" if result.rule_ms is not None else ""
            progress(f"  trials {self.done:>4}: {result.name} x{result.weight}: best {best}{rule}")

    return Progress()
