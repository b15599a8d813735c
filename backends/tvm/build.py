"""The TVM targets ``llvm`` and ``cuda``: Graph -> Relax IRModule -> compiled ``OUT.so`` + ``OUT.json``.

The library holds everything needed to run (code and weights, see ``lower``);
the sidecar says what it takes and returns, what it was built for and from, and
the library's sha256, so ``TvmRunner`` can refuse a library that does not match.

CUDA compilation never touches a GPU: kernels are scheduled by rules
(``rules.cuda_gemm``, ``rules.cuda_direct``, then DLight's defaults; no tuning, no device queries), and
the host side is compiled for ``llvm``, so a GPU-less machine can build for any ``sm_XX``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from resdsl.backends import index_bounds
from resdsl.backends.options import CudaOptions, LlvmOptions

from resdsl.atomic import atomic_paths
from resdsl.errors import ResdslError
from resdsl.ir import Graph
from resdsl.shapes import BATCH

from .artifact import FORMAT, INTERFACE_FUNCTION, interface_text, sha256_file, sidecar_path
from .errors import tvm_error_line
from .lower import lower
from .pipeline import int8_kernels, pipeline
from .target import cuda_target, isa_flags, lanes_of, llvm_target
from .tiles.book import TileBook, books_for, merged_tiles

TvmOptions = LlvmOptions | CudaOptions


def target_dict(options: TvmOptions) -> dict[str, Any]:
    """The TVM target as JSON; CUDA names its host so compiling needs no GPU."""
    if isinstance(options, LlvmOptions):
        return llvm_target(mcpu=options.mcpu)
    if isinstance(options, CudaOptions):
        return cuda_target(options.arch)
    raise ResdslError(f"target {options.target!r} is not a TVM target", hint="use llvm or cuda")


def emit(graph: Graph, out_path: str, options: TvmOptions) -> list[str]:
    """Compile ``graph`` and write ``out_path`` (.so) and its sidecar; returns both paths.

    Nothing is written unless both files are complete.
    """
    if not out_path.endswith(".so"):
        raise ResdslError(f"a TVM artifact must be a .so file, not {out_path!r}", hint="name the output OUT.so")
    tdict = target_dict(options)
    llvm = isinstance(options, LlvmOptions)
    books = tile_books(tdict, options.tiles, options.tophub) if llvm else []
    winograd = options.winograd if llvm else True
    embedded = interface_text(interface(graph, options))
    executable = compile_graph(graph, tdict, options.batch, options.db, books, winograd, embedded)
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
        with atomic_paths(out_path, meta_path) as (tmp_lib, tmp_meta):
            shutil.move(built, tmp_lib)
            with open(tmp_meta, "w") as f:
                json.dump(meta, f, indent=2)
                f.write("\n")
    return [out_path, meta_path]


def tile_books(tdict: dict[str, Any], tiles: str | None = None, tophub: bool = True) -> list[tuple[str, TileBook]]:
    """The tile books (``tiles.book``) a compile for the llvm target ``tdict`` applies: the
    shipped one for its CPU and the ``--db`` book ``tiles``."""
    import tvm

    lanes = lanes_of(tvm.target.Target(tdict))
    return books_for(tdict["mcpu"], lanes, tiles, tophub)


def compile_graph(
    graph: Graph,
    tdict: dict[str, Any],
    batch: int | None = None,
    db: str | None = None,
    books: list | None = None,
    winograd: bool = True,
    embedded_interface: str | None = None,
):
    """Lower and compile with resdsl's pipeline for the target (``pipeline.pipeline``).

    With ``db`` (a MetaSchedule directory), tuned schedules from that database replace
    resdsl's rules for the kernels it covers; the rest keep the rules' schedules.
    ``books`` (``tile_books``) give measured register tiles to resdsl's CPU kernels.
    ``winograd=False`` keeps every 3x3 conv direct on the CPU (``winograd``).
    """
    import tvm

    mod = lower(graph, batch, int8=int8_kernels(graph, tdict))
    if embedded_interface is not None:
        mod = _with_interface(mod, embedded_interface)
    target = tvm.target.Target(tdict)
    # checks the database: a user error, not TVM's
    relax_pipeline = pipeline(target, db, merged_tiles(books or []), winograd=winograd)
    try:
        with tvm.transform.PassContext(opt_level=3):
            return tvm.compile(mod, target, relax_pipeline=relax_pipeline)
    except Exception as e:  # a TVM failure is our bug, but the user still gets one line
        raise ResdslError(
            f"TVM failed to compile model {graph.name!r} for {target.kind.name}: {tvm_error_line(e)}",
            hint="rerun with --debug for the TVM traceback, or use the onnx target",
        ) from e


def _with_interface(mod, text: str):
    """Add ``resdsl_interface() -> str`` to the module: the library then states its own interface."""
    from tvm import relax

    bb = relax.BlockBuilder(mod)
    with bb.function(INTERFACE_FUNCTION, []):
        bb.emit_func_output(relax.expr.String(text))
    return bb.get()


def interface(graph: Graph, options: TvmOptions) -> dict[str, Any]:
    """The inputs and outputs (name, shape with the batch fixed or symbolic, dtype) the library takes."""

    def spec(name: str, nid: int) -> dict[str, Any]:
        shape = graph.node(nid).shape
        if options.batch is not None:
            shape = tuple(options.batch if d == BATCH else d for d in shape)
        entry = {"name": name, "shape": list(shape), "dtype": graph.node(nid).dtype}
        if name in bounds and nid in graph.inputs:
            entry["index_bound"] = bounds[name]
        return entry

    bounds = index_bounds(graph)

    return {
        "inputs": [spec(graph.node(nid).attrs["name"], nid) for nid in graph.inputs],
        "outputs": [spec(name, nid) for name, nid in graph.outputs],
    }


def compute_dtype(graph: Graph) -> str:
    """The float dtype the graph computes in (``convert_dtype``): what ``run --check`` compares in."""
    return graph.meta.get("dtype", {}).get("dtype", "float32")


def sidecar(
    graph: Graph, options: TvmOptions, tdict: dict[str, Any], digest: str, library: str, books: list
) -> dict[str, Any]:
    """What ``TvmRunner`` needs to load and check the library, and where it came from."""
    from resdsl.version import __version__

    llvm = isinstance(options, LlvmOptions)
    return {
        "format": FORMAT,
        "library": library,
        "sha256": digest,
        "model": graph.name,
        "target": tdict,
        "device": "cpu" if llvm else "cuda",
        "arch": None if llvm else options.arch,
        "cpu_flags": isa_flags(tdict) if llvm else [],
        "batch": options.batch,
        "db": options.db_path,
        "winograd": options.winograd if llvm else None,
        "tile_books": [{"path": path, "kernels": len(book.records)} for path, book in books],
        **interface(graph, options),
        "dtype": compute_dtype(graph),
        "resdsl_version": __version__,
        "provenance": dict(options.provenance),
    }
