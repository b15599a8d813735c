"""Artifacts are written whole or not at all, and their interface is the library's own (issue 11, items 3-4)."""

from __future__ import annotations

import json
import os

import pytest
from helpers import example
from resdsl.backends import emit, make_options, open_artifact

import resdsl
from resdsl.atomic import atomic_paths
from resdsl.cli import main

TINY = example("tiny.py")


@pytest.fixture(scope="module")
def tiny_so(tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "tiny.so"
    emit(resdsl.load(TINY), str(out), make_options("llvm"))
    return out


def _copy(src, dst_dir):
    for ext in (".so", ".json"):
        with open(str(src)[: -len(".so")] + ext, "rb") as f:
            data = f.read()
        with open(os.path.join(dst_dir, "m" + ext), "wb") as f:
            f.write(data)
    return os.path.join(dst_dir, "m.so")


def test_an_edited_input_name_in_the_sidecar_is_refused(tiny_so, tmp_path):
    path = _copy(tiny_so, tmp_path)
    meta_path = str(tmp_path / "m.json")
    meta = json.load(open(meta_path))
    meta["inputs"][0]["name"] = "renamed"
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(resdsl.ResdslError, match="was edited: it does not describe"):
        open_artifact(path)


def test_an_edited_input_shape_in_the_sidecar_is_refused_before_tvm_sees_it(tiny_so, tmp_path, capsys):
    path = _copy(tiny_so, tmp_path)
    meta_path = str(tmp_path / "m.json")
    meta = json.load(open(meta_path))
    meta["inputs"][0]["shape"][-1] += 1
    json.dump(meta, open(meta_path, "w"))
    assert main(["run", path, "--random"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resdsl: error: ") and "was edited" in err and "match_cast" not in err


def test_the_unedited_artifact_runs(tiny_so):
    runner = open_artifact(str(tiny_so))
    feeds = resdsl.random_inputs(resdsl.load(TINY), batch=2)
    got = runner.run(feeds)
    want = resdsl.interpret(resdsl.load(TINY), feeds)
    assert resdsl.max_rel_error(got["logits"], want["logits"]) < 1e-4


def test_output_onto_a_directory_leaves_no_sidecar(tmp_path, capsys):
    (tmp_path / "x.so").mkdir()
    with pytest.raises(SystemExit) as info:  # the CLI refuses it up front, before building
        main(["compile", TINY, "--target", "llvm", "-o", str(tmp_path / "x.so")])
    assert info.value.code == 2 and capsys.readouterr().err.startswith("resdsl: error: ")
    with pytest.raises(IsADirectoryError):  # and the backend, called directly, writes neither file
        emit(resdsl.load(TINY), str(tmp_path / "x.so"), make_options("llvm"))
    assert sorted(os.listdir(tmp_path)) == ["x.so"]  # no orphan x.json, no temporaries


def test_atomic_paths_renames_all_or_none(tmp_path):
    (tmp_path / "b").mkdir()
    with pytest.raises(IsADirectoryError):
        with atomic_paths(str(tmp_path / "a"), str(tmp_path / "b")) as (ta, tb):
            open(ta, "w").write("a")
            open(tb, "w").write("b")
    assert sorted(os.listdir(tmp_path)) == ["b"]
    with pytest.raises(RuntimeError):
        with atomic_paths(str(tmp_path / "c"), str(tmp_path / "d")) as (tc, td):
            open(tc, "w").write("c")
            raise RuntimeError("a failure while writing")
    assert sorted(os.listdir(tmp_path)) == ["b"]
    with atomic_paths(str(tmp_path / "c"), str(tmp_path / "d")) as (tc, td):
        open(tc, "w").write("c")
        open(td, "w").write("d")
    assert sorted(os.listdir(tmp_path)) == ["b", "c", "d"]
