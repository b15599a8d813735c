"""The TVM targets ``llvm`` and ``cuda``: Graph -> Relax IRModule -> compiled ``OUT.so`` + ``OUT.json``.

The library holds everything needed to run (code and weights, see ``tvm_lower``);
the sidecar says what it takes and returns, what it was built for and from, and
the library's sha256, so ``TvmRunner`` can refuse a library that does not match.

CUDA compilation never touches a GPU: kernels are scheduled by rules
(``tvm_cuda_schedule``, then DLight's defaults; no tuning, no device queries), and
the host side is compiled for ``llvm``, so a GPU-less machine can build for any ``sm_XX``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from typing import Any

from resdsl.atomic import atomic_path
from resdsl.errors import ResdslError
from resdsl.ir import Graph
from resdsl.shapes import BATCH

from . import EmitOptions, tvm_schedule
from .tvm_lower import tvm_error_line
from .tvm_schedule import isa_flags

FORMAT = "resdsl-tvm/1"


def sidecar_path(library: str) -> str:
    """``OUT.so`` -> ``OUT.json``."""
    return library[: -len(".so")] + ".json" if library.endswith(".so") else library + ".json"


def target_dict(options: EmitOptions) -> dict[str, Any]:
    """The TVM target as JSON; CUDA names its host so compiling needs no GPU."""
    if options.target == "llvm":
        from .tvm_schedule import llvm_target

        return llvm_target(mcpu=options.mcpu)
    if options.target == "cuda":
        if not re.fullmatch(r"sm_\d+[a-z]?", options.arch or ""):
            raise ResdslError(f"invalid CUDA architecture {options.arch!r}", hint="use e.g. --arch sm_80, sm_89, sm_90")
        return {"kind": "cuda", "arch": options.arch, "host": {"kind": "llvm"}}
    raise ResdslError(f"target {options.target!r} is not a TVM target", hint="use llvm or cuda")


def emit(graph: Graph, out_path: str, options: EmitOptions) -> list[str]:
    """Compile ``graph`` and write ``out_path`` (.so) and its sidecar; returns both paths.

    Nothing is written unless both files are complete.
    """
    if not out_path.endswith(".so"):
        raise ResdslError(f"a TVM artifact must be a .so file, not {out_path!r}", hint="name the output OUT.so")
    if options.batch is not None and (not isinstance(options.batch, int) or options.batch < 1):
        raise ResdslError(f"--batch must be a positive integer, got {options.batch!r}")
    tdict = target_dict(options)
    books = tile_books(tdict, options.db, options.tophub)
    executable = compile_graph(graph, tdict, options.batch, options.db, books, options.winograd)
    meta_path = sidecar_path(out_path)
    with tempfile.TemporaryDirectory(prefix="resdsl-tvm-") as tmpdir:
        built = os.path.join(tmpdir, "lib.so")
        try:
            executable.export_library(built)
        except Exception as e:
            raise ResdslError(
                f"TVM could not link {out_path}: {tvm_error_line(e)}", hint="a C++ compiler (g++) must be on PATH"
            ) from e
        digest = sha256_file(built)
        meta = sidecar(graph, options, tdict, digest, os.path.basename(out_path), books)
        with atomic_path(out_path) as tmp_lib, atomic_path(meta_path) as tmp_meta:
            shutil.move(built, tmp_lib)
            with open(tmp_meta, "w") as f:
                json.dump(meta, f, indent=2)
                f.write("\n")
    return [out_path, meta_path]


def tile_books(tdict: dict[str, Any], db: str | None, tophub: bool = True) -> list:
    """The tile books (``tvm_tiles``) a compile applies: the shipped one for the target CPU and
    a ``--db`` book. A book is a CPU thing: on cuda ``--db`` must be a MetaSchedule database."""
    from . import tvm_tiles

    if tdict["kind"] != "llvm":
        if db is not None and tvm_tiles.is_tile_book(db):
            raise ResdslError(f"{db} is a CPU tile book, not a database for {tdict['kind']}", hint="drop --db")
        return []
    import tvm

    lanes = tvm_schedule.lanes_of(tvm.target.Target(tdict))
    return tvm_tiles.books_for(tdict["mcpu"], lanes, db, tophub)


def compile_graph(
    graph: Graph,
    tdict: dict[str, Any],
    batch: int | None = None,
    db: str | None = None,
    books: list | None = None,
    winograd: bool = True,
):
    """Lower and compile with resdsl's pipeline for the target (``tvm_schedule.pipeline``).

    With ``db``, tuned schedules from that MetaSchedule database replace resdsl's rules
    for the kernels it covers; the rest keep the rules' schedules. ``books``
    (``tile_books``) give measured register tiles to resdsl's CPU kernels. ``winograd=False``
    keeps every 3x3 conv direct on the CPU (``tvm_winograd``).
    """
    import tvm

    from .tvm_lower import lower
    from .tvm_tiles import is_tile_book, merged_tiles

    mod = lower(graph, batch)
    target = tvm.target.Target(tdict)
    metaschedule = db if db is not None and not is_tile_book(db) else None
    # checks the database: a user error, not TVM's
    pipeline = tvm_schedule.pipeline(target, metaschedule, merged_tiles(books or []), winograd=winograd)
    try:
        with tvm.transform.PassContext(opt_level=3):
            return tvm.compile(mod, target, relax_pipeline=pipeline)
    except Exception as e:  # a TVM failure is our bug, but the user still gets one line
        raise ResdslError(
            f"TVM failed to compile model {graph.name!r} for {target.kind.name}: {tvm_error_line(e)}",
            hint="rerun with --debug for the TVM traceback, or use the onnx target",
        ) from e


def sidecar(
    graph: Graph, options: EmitOptions, tdict: dict[str, Any], digest: str, library: str, books: list
) -> dict[str, Any]:
    """What ``TvmRunner`` needs to load and check the library, and where it came from."""
    from resdsl import __version__

    def spec(name: str, nid: int) -> dict[str, Any]:
        shape = graph.node(nid).shape
        if options.batch is not None:
            shape = tuple(options.batch if d == BATCH else d for d in shape)
        return {"name": name, "shape": list(shape), "dtype": graph.node(nid).dtype}

    return {
        "format": FORMAT,
        "library": library,
        "sha256": digest,
        "model": graph.name,
        "target": tdict,
        "device": "cuda" if tdict["kind"] == "cuda" else "cpu",
        "arch": options.arch if tdict["kind"] == "cuda" else None,
        "cpu_flags": isa_flags(tdict) if tdict["kind"] == "llvm" else [],
        "batch": options.batch,
        "db": options.db,
        "winograd": options.winograd if tdict["kind"] == "llvm" else None,
        "tile_books": [{"path": path, "kernels": len(book.records)} for path, book in books],
        "inputs": [spec(graph.node(nid).attrs["name"], nid) for nid in graph.inputs],
        "outputs": [spec(name, nid) for name, nid in graph.outputs],
        "resdsl_version": __version__,
        "provenance": dict(options.provenance),
    }


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
