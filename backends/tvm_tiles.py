"""Tile books: measured register tiles for resdsl's CPU kernels, and the search that fills them.

``tvm_schedule.choose_tile`` picks a kernel's register tile from a rule of thumb
(fill the accumulator registers, rows first). The rule is right for most
kernels, not all: which of 14x2, 7x4 or 4x4 is fastest, and which loop order keeps
the operands in cache, depends on the CPU and the shape. A *tile book* is the
measured answer, per kernel shape (``MacShape.key()``) and per CPU (LLVM's
``mcpu``).

Why our own search rather than MetaSchedule's: MetaSchedule searches its own
space, does not start from resdsl's schedules, and on 2 cores one batch of its
builds takes ~45 s; resdsl's space is a dozen tiles a kernel, each compiled in
well under a second in this process and timed with ``time_evaluator``. Every
kernel of resnet50 is searched in minutes, so tile books for the zoo ship with
resdsl (``resdsl/tophub/llvm-<mcpu>.json``, like TVM's TopHub) and are applied
automatically: users get measured tiles without tuning.

A record is kept only when its tile beat the rule's tile by ``MIN_GAIN`` when
the two were measured again, interleaved: a book never makes a kernel slower
than the untuned compile, up to the measurement's noise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from resdsl.atomic import atomic_write
from resdsl.errors import ResdslError
from resdsl.ir import Graph

from .tvm_schedule import Tile, default_tile, kernel_shape, lanes_of, schedule_kernel, tile_candidates

FORMAT = "resdsl-tiles/1"
MIN_GAIN = 0.03  # a tile must be 3% faster than the rule's to be recorded
MIN_MS = 0.01  # kernels faster than this are left to the rule: their timings are mostly noise
FINALISTS = 3  # candidates measured again against the rule's tile


@dataclass
class TileRecord:
    tile: Tile
    ms: float  # the tile's median time when it was chosen
    default_ms: float  # the rule's tile, measured alongside
    kernel: str  # the kernel's name in the model it was tuned on (for people, not lookup)


@dataclass
class TileBook:
    mcpu: str
    lanes: int
    records: dict[str, TileRecord] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)

    def tiles(self) -> dict[str, Tile]:
        return {key: r.tile for key, r in self.records.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "mcpu": self.mcpu,
            "lanes": self.lanes,
            "models": self.models,
            "records": {
                key: {**asdict(r.tile), "ms": round(r.ms, 6), "default_ms": round(r.default_ms, 6), "kernel": r.kernel}
                for key, r in sorted(self.records.items())
            },
        }


def load_book(path: str) -> TileBook:
    """Read a tile book, or a ResdslError naming the file and what to do."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ResdslError(f"cannot read tile book {path}: {e.strerror}", hint="write one with 'resdsl tune'") from e
    except json.JSONDecodeError as e:
        raise ResdslError(f"{path} is not a tile book: {e}", hint="write one with 'resdsl tune'") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ResdslError(f"{path} is not a tile book (format {FORMAT!r})", hint="write one with 'resdsl tune'")
    try:
        records = {
            key: TileRecord(
                Tile(int(r["rows"]), int(r["reg"]), int(r["vec"]), bool(r["channels_outer"])),
                float(r["ms"]),
                float(r["default_ms"]),
                str(r.get("kernel", "")),
            )
            for key, r in data["records"].items()
        }
        return TileBook(str(data["mcpu"]), int(data["lanes"]), records, list(data.get("models", [])))
    except (KeyError, TypeError, ValueError) as e:
        raise ResdslError(f"tile book {path} is damaged ({e})", hint="write it again with 'resdsl tune'") from e


def save_book(book: TileBook, path: str) -> None:
    atomic_write(path, json.dumps(book.to_json(), indent=1) + "\n")


def shipped_book_path(mcpu: str) -> str:
    """Where resdsl ships the tile book for ``mcpu`` (the file may not exist)."""
    import resdsl

    return os.path.join(os.path.dirname(resdsl.__file__), "tophub", f"llvm-{mcpu}.json")


def is_tile_book(path: str) -> bool:
    """``--db`` takes a tile book (a .json file) or a MetaSchedule database (a directory)."""
    return path.endswith(".json") and not os.path.isdir(path)


def books_for(mcpu: str, lanes: int, db: str | None, tophub: bool = True) -> list[tuple[str, TileBook]]:
    """The tile books a compile for ``mcpu`` applies, later ones overriding earlier ones: the
    shipped book for this CPU (unless ``tophub`` is off), then the user's ``--db`` book."""
    books = []
    shipped = shipped_book_path(mcpu)
    if tophub and os.path.exists(shipped):
        books.append((f"resdsl/tophub/{os.path.basename(shipped)}", load_book(shipped)))
    if db is not None and is_tile_book(db):
        book = load_book(db)
        if book.lanes != lanes:
            raise ResdslError(
                f"tile book {db} was tuned for {book.mcpu} ({book.lanes} float lanes), not this target's {lanes}",
                hint="tune again for this CPU with 'resdsl tune'",
            )
        books.append((db, book))
    return books


def merged_tiles(books: list[tuple[str, TileBook]]) -> dict[str, Tile]:
    tiles: dict[str, Tile] = {}
    for _, book in books:
        tiles.update(book.tiles())
    return tiles


# ---------------------------------------------------------------- the search


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

    from .tvm_runner import use_all_cores
    from .tvm_tune import extract_tasks, fused_module

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
