"""``resdsl tune``: measure a model's kernels into a tile book or a MetaSchedule database that
``compile --db`` reuses.

Two methods: ``tiles`` (the default on the CPU) searches resdsl's own register tiles,
minutes for a ResNet; ``metaschedule`` runs TVM's search (slow on few cores, and the
only one for cuda)."""

from __future__ import annotations

import argparse

from resdsl.errors import ResdslError

from . import add_model_args, add_pass_args, compile_request, emit_options, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="tune a model's TVM kernels into a tile book or a MetaSchedule database")
    add_model_args(p)
    add_pass_args(p)
    p.add_argument("--target", default="llvm", help="llvm (cpu) or cuda (default llvm)")
    p.add_argument("--arch", default="sm_90", help="CUDA architecture for --target cuda (default sm_90)")
    p.add_argument(
        "--method",
        choices=["tiles", "metaschedule"],
        help="tiles: resdsl's register tiles (llvm, the default there); metaschedule: TVM's search (cuda default)",
    )
    p.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="metaschedule: measured candidates in all (required); tiles: at most N tiles a kernel",
    )
    p.add_argument(
        "--db",
        metavar="PATH",
        help="tile book to extend (default resdsl-tiles.json) or MetaSchedule directory (default resdsl-tune)",
    )
    p.add_argument(
        "--batch", type=positive_int, default=1, help="batch size to tune for (default 1); compile with the same"
    )
    p.add_argument("--weights", metavar="FILE", help="load parameters from .safetensors, .npz or .pt")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resdsl.backends import TuningDb, resolve_target
    from resdsl.backends.tvm.build import target_dict
    from resdsl.backends.tvm.tune import tune
    from resdsl.driver import build_graph

    target = resolve_target(args.target)
    if target.name not in ("llvm", "cuda"):
        raise ResdslError(f"only TVM targets can be tuned, not {target.name!r}", hint="use --target llvm or cuda")
    method = args.method or ("tiles" if target.name == "llvm" else "metaschedule")
    if method == "tiles" and target.name != "llvm":
        raise ResdslError("tile search is for the CPU", hint="use --method metaschedule for cuda")
    if method == "metaschedule" and args.trials is None:
        raise ResdslError("--method metaschedule needs --trials N", hint="e.g. --trials 200")
    if args.trials is not None and args.trials < (1 if method == "tiles" else 0):
        raise ResdslError(f"--trials must be positive, got {args.trials}")
    req = compile_request(args, verify=True)
    graph, _ = build_graph(req)
    tdict = target_dict(emit_options(args, target.name, db=False))  # here --db is what tuning writes
    if method == "tiles":
        return _tiles(args, graph, tdict, TuningDb.parse(args.db or "resdsl-tiles.json"))
    db = args.db or "resdsl-tune"
    report = tune(graph, tdict, args.trials, db, batch=args.batch)
    print(report.table())
    print(
        f"tuned {len(report.tasks)} kernels in {report.seconds:.0f} s; "
        f"apply with: resdsl compile {_model(args)} --target {target.name} --batch {args.batch} --db {db}"
    )
    return 0


def _tiles(args: argparse.Namespace, graph, tdict, book_db) -> int:
    import sys
    import time

    from resdsl.backends.tvm.tiles.search import search_tiles

    db = book_db.path
    if book_db.kind != "tiles":
        raise ResdslError(f"a tile book is a .json file, not {db!r}", hint="e.g. --db tiles.json")
    t0 = time.perf_counter()
    book, results = search_tiles(
        graph, tdict, db, batch=args.batch, max_candidates=args.trials, progress=lambda m: print(m, file=sys.stderr)
    )
    kept = sum(r.kept for r in results)
    before = sum(r.calls * r.default_ms for r in results)
    after = sum(r.calls * (r.best_ms if r.kept else r.default_ms) for r in results)
    print(
        f"{len(results)} kernels searched in {time.perf_counter() - t0:.0f} s: {kept} got a better tile; "
        f"kernel time {before:.2f} -> {after:.2f} ms a run (x{before / after:.2f}); {db} holds {len(book.records)}"
    )
    print(f"apply with: resdsl compile {_model(args)} --target llvm --db {db}")
    return 0


def _model(args: argparse.Namespace) -> str:
    return args.model_file + (f" --model {args.model}" if args.model else "")
