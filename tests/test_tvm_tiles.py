"""Tile books: a measured tile really changes the compiled kernel and not its numbers; the
search writes a book that compiles use; the shipped books are valid and applied automatically."""

from __future__ import annotations

import glob
import json
import os

import pytest
from helpers import assert_close, interpret_random, randomize
from resdsl.backends import LlvmOptions, emit, make_options
from resdsl.passes import pipeline, run_passes
from test_cli import cli

import resdsl
from resdsl import nn

tvm = pytest.importorskip("tvm")

from resdsl.backends.tvm import pipeline as tvm_pipeline  # noqa: E402
from resdsl.backends.tvm import target as tvm_target  # noqa: E402
from resdsl.backends.tvm.lower import lower  # noqa: E402
from resdsl.backends.tvm.rules import kernel  # noqa: E402
from resdsl.backends.tvm.tiles import book as tile_book  # noqa: E402


@resdsl.model
def block():
    x = nn.input("x", (24, 12, 12))
    y = nn.relu(nn.conv2d(x, 32, 3, padding=1, name="conv1"))
    return nn.output("y", nn.relu(nn.conv2d(y, 24, 1, name="conv2") + x))


def _graph():
    return run_passes(randomize(resdsl.canonical(block)), pipeline(2)).graph


def _kernels(graph, tiles):
    """name -> TIR of each scheduled conv kernel, compiled with ``tiles``."""
    target = tvm.target.Target(tvm_target.llvm_target())
    with target:
        passes = tvm_pipeline.fused_passes(target) + tvm_pipeline.schedule_passes(target, None, tiles)
        mod = tvm.transform.Sequential(passes)(lower(graph, 1))
    return {gv.name_hint: f.script() for gv, f in mod.functions_items() if "conv2d" in gv.name_hint}


def _shapes(graph):
    target = tvm.target.Target(tvm_target.llvm_target())
    from resdsl.backends.tvm.pipeline import fused_module
    from resdsl.backends.tvm.tune import extract_tasks

    tasks = extract_tasks(fused_module(graph, target, 1), target)
    shapes = [kernel.kernel_shape(t.dispatched[0]["main"], 16) for t in tasks]
    return [s for s in shapes if s is not None]


def test_candidates_fit_and_start_with_the_rule():
    shape = kernel.MacShape((1, 28), 28, 128, (3, 3, 64), 30 * 30 * 64, 9 * 64 * 128)
    candidates = kernel.tile_candidates(shape, 16)
    assert candidates[0] == kernel.default_tile(shape, 16)
    assert len(set(candidates)) == len(candidates) > 4
    for tile in candidates:
        assert kernel.tile_fits(tile, shape, 16)
        assert tile.rows * tile.reg <= 28
    assert shape.key() == "1x28/28x128/r3x3x64/d57600/w73728"


def test_a_book_record_changes_one_kernel_and_not_the_numbers(tmp_path):
    graph = _graph()
    shape = next(s for s in _shapes(graph) if s.reduction == (3, 3, 24))
    rule = kernel.default_tile(shape, 16)
    other = next(t for t in kernel.tile_candidates(shape, 16) if t.rows != rule.rows)
    plain, tuned = _kernels(graph, None), _kernels(graph, {shape.key(): other})
    changed = [name for name in plain if plain[name] != tuned[name]]
    assert len(changed) >= 1 and all("conv2d_" in n or "conv2d" in n for n in changed)
    assert len(changed) < len(plain)  # the 1x1 conv kept its tile
    # Through emit: the book file is applied, named in the sidecar, and the numbers are unchanged.
    book = tile_book.TileBook(tvm_target.host_cpu().mcpu, 16)
    book.records[shape.key()] = tile_book.TileRecord(other, 1.0, 2.0, "conv1")
    path = str(tmp_path / "book.json")
    tile_book.save_book(book, path)
    out = str(tmp_path / "m.so")
    emit(graph, out, make_options("llvm", db=path, tophub=False))
    meta = json.load(open(tmp_path / "m.json"))
    assert meta["tile_books"] == [{"path": path, "kernels": 1}]
    from resdsl.backends.tvm.runner import TvmRunner

    feeds, want = interpret_random(graph, batch=2)
    assert_close(TvmRunner(out).run(feeds), want)


def test_stale_record_falls_back_to_the_rule():
    """A record whose tile does not divide the kernel (a book from another version) is ignored."""
    graph = _graph()
    shape = next(s for s in _shapes(graph) if s.reduction == (3, 3, 24))
    bad = kernel.Tile(5, 3, 16, False)
    assert not kernel.tile_fits(bad, shape, 16)
    assert _kernels(graph, {shape.key(): bad}) == _kernels(graph, None)


def test_tune_writes_a_book_that_compile_applies(tmp_path):
    book = str(tmp_path / "tiles.json")
    r = cli("tune", "examples/tiny.py", "--db", book, "--trials", "3")
    assert r.returncode == 0, r.stderr
    assert "kernels searched" in r.stdout and "searching tiles for" in r.stderr
    data = json.load(open(book))
    assert data["format"] == tile_book.FORMAT and data["models"] == ["tiny"]
    out = str(tmp_path / "tiny.so")
    r = cli("compile", "examples/tiny.py", "--target", "llvm", "--db", book, "-o", out)
    assert r.returncode == 0, r.stderr
    r = cli("run", out, "--random", "--check", "examples/tiny.py")
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr


def test_book_errors_are_user_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(resdsl.ResdslError, match="not a tile book"):
        tile_book.load_book(str(bad))
    with pytest.raises(resdsl.ResdslError, match="cannot read tile book"):
        tile_book.load_book(str(tmp_path / "missing.json"))
    narrow = tile_book.TileBook("haswell", 8)
    tile_book.save_book(narrow, str(tmp_path / "avx2.json"))
    with pytest.raises(resdsl.ResdslError, match="tuned for haswell"):
        tile_book.books_for("emeraldrapids", 16, str(tmp_path / "avx2.json"))
    r = cli("compile", "examples/tiny.py", "--target", "cuda", "--db", str(tmp_path / "avx2.json"), "-o", "x.so")
    assert r.returncode == 2 and "CPU tile book" in r.stderr
    r = cli("tune", "examples/tiny.py", "--target", "cuda", "--method", "tiles")
    assert r.returncode == 2 and "resdsl: error: tile search is for the CPU" in r.stderr


def test_shipped_book_is_applied_unless_switched_off(tmp_path, monkeypatch):
    shipped = tmp_path / "llvm-test.json"
    tile_book.save_book(tile_book.TileBook("test", 16), str(shipped))
    monkeypatch.setattr(tile_book, "shipped_book_path", lambda mcpu: str(shipped))
    graph = _graph()
    emit(graph, str(tmp_path / "a.so"), LlvmOptions())
    emit(graph, str(tmp_path / "b.so"), LlvmOptions(tophub=False))
    assert json.load(open(tmp_path / "a.json"))["tile_books"] == [
        {"path": "resdsl/tophub/llvm-test.json", "kernels": 0}
    ]
    assert json.load(open(tmp_path / "b.json"))["tile_books"] == []


SHIPPED = sorted(glob.glob(os.path.join(os.path.dirname(resdsl.__file__), "tophub", "*.json")))


@pytest.mark.parametrize("path", SHIPPED, ids=[os.path.basename(p) for p in SHIPPED])
def test_shipped_books_are_valid(path):
    book = tile_book.load_book(path)
    assert os.path.basename(path) == f"llvm-{book.mcpu}.json" and book.lanes in (4, 8, 16)
    assert book.records and book.models
    for key, record in book.records.items():
        tile = record.tile
        assert tile.vec <= book.lanes and tile.rows * tile.reg <= 28, key
        assert record.ms < record.default_ms, key  # only improvements are recorded


def test_mcpu_builds_a_library_for_an_older_cpu(tmp_path):
    """--mcpu x86-64-v3 (AVX2): the library needs no AVX-512, runs here and equals the interpreter."""
    out = str(tmp_path / "v3.so")
    r = cli("compile", "examples/tiny.py", "--target", "llvm", "--mcpu", "x86-64-v3", "-o", out)
    assert r.returncode == 0, r.stderr
    meta = json.load(open(tmp_path / "v3.json"))
    assert meta["target"]["mcpu"] == "x86-64-v3"
    assert "avx2" in meta["cpu_flags"] and not any(f.startswith("avx512") for f in meta["cpu_flags"])
    r = cli("run", out, "--random", "--check", "examples/tiny.py")
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    r = cli("compile", "examples/tiny.py", "--target", "llvm", "--mcpu", "pentium-9", "-o", out)
    assert r.returncode == 2 and "LLVM does not know the CPU 'pentium-9'" in r.stderr
    r = cli("compile", "examples/tiny.py", "--target", "onnx", "--mcpu", "haswell", "-o", str(tmp_path / "t.onnx"))
    assert r.returncode == 2 and "--mcpu is for the llvm target" in r.stderr


def test_instruction_set_names_agree():
    assert {tvm_target.isa_name(f) for f in ("sse4_2", "avx512_bf16", "pni", "bmi1", "amx_tile")} == {
        tvm_target.isa_name(f) for f in ("sse4.2", "avx512bf16", "sse3", "bmi", "amx-tile")
    }
