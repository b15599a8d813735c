"""The tile search: measure every candidate register tile of every distinct kernel of a model
and record the winners in a tile book (``book``).

Why our own search rather than MetaSchedule's, and why a record needs ``MIN_GAIN``: see
``book``'s docstring.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resdsl.errors import ResdslError
from resdsl.ir import Graph

from ..pipeline import fused_module
from ..rules.kernel import Tile, default_tile, kernel_shape, schedule_kernel, tile_candidates
from ..target import lanes_of, use_all_cores
from ..tune import extract_tasks
from .book import TileBook, TileRecord, load_book, save_book

MIN_GAIN = 0.03  # a tile must be 3% faster than the rule's to be recorded
MIN_MS = 0.01  # kernels faster than this are left to the rule: their timings are mostly noise
FINALISTS = 3  # candidates measured again against the rule's tile


@dataclass
class KernelResult:
    name: str
    key: str
    calls: int
    candidates: int
    default_ms: float
    best_ms: float
    best: Tile
    gflops: float  # of the kept tile

    @property
    def kept(self) -> bool:
        return self.default_ms >= MIN_MS and self.best_ms < self.default_ms * (1 - MIN_GAIN)


def search_tiles(
    graph: Graph,
    tdict: dict[str, Any],
    out_path: str,
    batch: int = 1,
    max_candidates: int | None = None,
    progress: Callable[[str], None] = print,
    searched: set[str] | None = None,
) -> tuple[TileBook, list[KernelResult]]:
    """Measure every candidate tile of every distinct kernel of ``graph``; merge into ``out_path``.

    An existing book at ``out_path`` is extended (one book can serve a whole zoo);
    a kernel measured again replaces its record. Kernels whose key is in ``searched``
    are skipped, and the keys searched now are added to it.
    """
    import tvm

    use_all_cores()
    target = tvm.target.Target(tdict)
    if target.kind.name != "llvm":
        raise ResdslError("tile search is for the CPU (llvm) target", hint="use --method metaschedule for cuda")
    lanes = lanes_of(target)
    mcpu = str(target.attrs.get("mcpu", "generic"))
    book = load_book(out_path) if os.path.exists(out_path) else TileBook(mcpu, lanes)
    if (book.mcpu, book.lanes) != (mcpu, lanes):
        raise ResdslError(f"{out_path} holds tiles for {book.mcpu}, not {mcpu}", hint="write to another file")
    # Kernels with one MAC shape but other epilogues share a tile: search once, count every call.
    kernels: dict[str, list] = {}
    for task in extract_tasks(fused_module(graph, target, batch), target):
        func = task.dispatched[0]["main"]
        shape = kernel_shape(func, lanes)
        if shape is not None and shape.key() not in (searched or ()):
            kernels.setdefault(shape.key(), [task.task_name, shape, func, 0])[3] += int(task.weight)
    progress(f"searching tiles for {len(kernels)} kernels of {graph.name} on {mcpu} into {out_path}")
    results = []
    for i, (name, shape, func, calls) in enumerate(kernels.values(), 1):
        result = _search_kernel(name, calls, func, shape, target, lanes, max_candidates)
        if result is None:
            continue
        results.append(result)
        if searched is not None:
            searched.add(result.key)
        if result.kept:
            book.records[result.key] = TileRecord(result.best, result.best_ms, result.default_ms, result.name)
        verdict = f"-> {_describe(result.best)} {result.best_ms:.3f} ms" if result.kept else "(rule's tile kept)"
        progress(
            f"  [{i}/{len(kernels)}] {result.name} x{result.calls}: rule {result.default_ms:.3f} ms {verdict}, "
            f"{result.gflops:.0f} GFLOP/s"
        )
    if graph.name not in book.models:
        book.models.append(graph.name)
    save_book(book, out_path)
    return book, results


def _describe(tile: Tile) -> str:
    return f"{tile.rows}x{tile.reg}x{tile.vec}{' channels-outer' if tile.channels_outer else ''}"


def _search_kernel(name, calls, func, shape, target, lanes, max_candidates) -> KernelResult | None:
    """Time every candidate once, then the fastest few again interleaved with the rule's tile;
    None when ``schedule_kernel`` does not take the function after all."""
    candidates = tile_candidates(shape, lanes)[: max_candidates or None]
    default = default_tile(shape, lanes)
    timers = {}
    for tile in candidates:
        timer = _timer(func, {shape.key(): tile}, target, lanes)
        if timer is not None:
            timers[tile] = timer
    if default not in timers:  # a reduction of products that is no kernel (layer norm's variance)
        return None
    first = {tile: timer() for tile, timer in timers.items()}
    finalists = sorted(first, key=first.get)[:FINALISTS]
    finalists = [default] + [t for t in finalists if t != default]
    rounds: dict[Tile, list[float]] = {t: [first[t]] for t in finalists}
    for _ in range(2):
        for tile in finalists:
            rounds[tile].append(timers[tile]())
    medians = {t: sorted(v)[len(v) // 2] for t, v in rounds.items()}
    best = min(medians, key=medians.get)
    flops = 2.0 * shape.outer_count * (shape.rows or 1) * shape.cols
    for r in shape.reduction:
        flops *= r if isinstance(r, int) else 1
    kept_ms = medians[best] if medians[best] < medians[default] * (1 - MIN_GAIN) else medians[default]
    if medians[default] < MIN_MS:
        kept_ms = medians[default]
    return KernelResult(
        name, shape.key(), calls, len(timers), medians[default], medians[best], best, flops / kept_ms / 1e6
    )


def _timer(func, tiles, target, lanes) -> Callable[[], float] | None:
    """A function returning the median ms of the kernel scheduled with ``tiles``; None if it
    cannot be scheduled. Weights are fed already packed, as the compiled model holds them."""
    import numpy as np
    import tvm
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    sch = schedule_kernel(func, lanes, tiles)
    if sch is None:
        return None
    mod = s_tir.transform.RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(sch.mod)
    try:
        lib = tvm.compile(mod, target).jit()
    except Exception:  # a tile LLVM cannot build is simply not a candidate
        return None
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    args = [
        tvm.runtime.tensor(rng.standard_normal([int(d) for d in a.shape]).astype(a.dtype), dev)
        for a in ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
    ]
    evaluate = lib.time_evaluator("main", dev, number=1, repeat=5, min_repeat_ms=20)

    def timer() -> float:
        results = sorted(evaluate(*args).results)
        return 1e3 * results[len(results) // 2]

    return timer
