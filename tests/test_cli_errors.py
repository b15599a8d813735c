"""Exit codes as promised: the user's input and environment give one line and exit 2, every command.

Tests run as root, where chmod does not stop writes: read-only, full and forbidden file systems
are simulated by making the file-system call raise the OSError the kernel would.
"""

from __future__ import annotations

import errno
import os
import tempfile

import numpy as np
import pytest
from helpers import example

from resdsl import resources
from resdsl.cli import main
from resdsl.commands.run import safe_filename, save_outputs
from resdsl.errors import ResdslError
from resdsl.numerics import max_rel_error

TINY = example("tiny.py")
RESNET = example("resnet.py")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("art") / "tiny.onnx")
    assert main(["compile", TINY, "-o", path]) == 0
    return path


@pytest.fixture
def work(tmp_path) -> str:
    (tmp_path / "afile").write_text("not a directory")
    (tmp_path / "adir.onnx").mkdir()
    return str(tmp_path)


def _one_line_exit_2(argv: list[str], capsys, expect: str) -> str:
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's errors exit from within parse_args
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, (argv, rc, err)
    lines = err.strip().splitlines()
    # one error line; only the model's source line it points at may follow, indented
    assert lines[0].startswith("resdsl: error: ") and all(line.startswith("    ") for line in lines[1:]), err
    assert "internal error" not in err and expect in err, err
    return err


# (command line with {w} the work directory and {a} a compiled artifact, what the message says)
ARGUMENT_CASES = [
    (["compile", TINY, "-o", "{w}/adir.onnx"], "is a directory"),
    (["compile", TINY, "-o", "{w}/afile/x.onnx"], "which is a file, not a directory"),
    (["compile", TINY, "-o", "{w}/t.onnx", "--batch", "0"], "--batch: '0' must be a positive integer"),
    (["compile", TINY, "-o", "{w}/t.onnx", "--target", "llvm", "--batch", "-2"], "must be a positive integer"),
    (
        ["compile", TINY, "-o", "{w}/t.onnx", "--arg", "num_classes=0"],
        "tiny.py:19: nn.linear: out_features=0 must be at least 1",
    ),
    (["run", "{a}", "--random", "--batch", "0"], "must be a positive integer"),
    (["run", "{a}", "--random", "--batch", "-1"], "must be a positive integer"),
    (["run", "{a}", "--random", "--seed", "-1"], "--seed: '-1' must be an integer of 0 or more"),
    (["run", "{a}", "--random", "--save", "{w}/afile"], "is a file, not a directory"),
    (["run", "{a}", "--random", "--save", "{w}/afile/out"], "which is a file, not a directory"),
    (["show", TINY, "--arg", "num_classes=0"], "out_features=0 must be at least 1"),
    (["show", TINY, "--depth", "0"], "--depth: '0' must be a positive integer"),
    (["viz", TINY, "-o", "{w}/adir.onnx"], "is a directory"),
    (["viz", TINY, "-o", "{w}/afile/g.dot"], "which is a file"),
    (["analyze", TINY, "--batch", "0"], "must be a positive integer"),
    (["analyze", TINY, "--seed", "-5"], "must be an integer of 0 or more"),
    (["analyze", TINY, "-o", "{w}/adir.onnx"], "is a directory"),
    (["weights", "export", TINY, "-o", "{w}/adir.onnx"], "is a directory"),
    (["weights", "export", TINY, "-o", "{w}/afile/w.npz"], "which is a file"),
    (["bench", "{a}", "--repeat", "0"], "--repeat must be >= 1"),
    (["bench", "{a}", "--seed", "-1"], "must be an integer of 0 or more"),
    (["bench", "{a}", "--batch", "0"], "is not a positive integer"),
    (["tune", TINY, "--batch", "0"], "must be a positive integer"),
    (["tune", TINY, "--batch", "-3"], "must be a positive integer"),
    (["passes", "--bogus"], "unrecognized arguments"),
]


@pytest.mark.parametrize("argv, expect", ARGUMENT_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_argument_values_are_exit_2(argv, expect, work, artifact, capsys):
    _one_line_exit_2([a.format(w=work, a=artifact) for a in argv], capsys, expect)
    assert not os.path.exists(os.path.join(work, "t.onnx"))  # refused before any work


def test_existing_directory_refused_before_any_work(work, capsys, monkeypatch):
    import resdsl.driver

    monkeypatch.setattr(resdsl.driver, "build_graph", lambda *a, **k: pytest.fail("built a model for a bad -o"))
    _one_line_exit_2(["compile", TINY, "--target", "llvm", "-o", f"{work}/adir.onnx"], capsys, "is a directory")
    assert sorted(os.listdir(work)) == ["adir.onnx", "afile"]  # no orphan sidecar


def _raise(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), args[0] if args else None)

    return fail


# Commands that write a file, and the file-system call to make fail.
WRITERS = [
    ["compile", TINY, "-o", "{w}/out/t.onnx"],
    ["compile", TINY, "--target", "onnx-ort", "-o", "{w}/t.onnx"],
    ["viz", TINY, "-o", "{w}/g.dot"],
    ["weights", "export", TINY, "-o", "{w}/w.npz"],
    ["run", "{a}", "--random", "--save", "{w}/outs"],
]
ENVIRONMENT = [
    ("mkstemp", errno.EROFS, "Read-only file system", "read-only: write elsewhere"),
    ("mkstemp", errno.EACCES, "Permission denied", "check the permissions"),
    ("replace", errno.ENOSPC, "No space left on device", "the disk is full"),
    ("replace", errno.EDQUOT, "Disk quota exceeded", "free some space"),
]


@pytest.mark.parametrize("argv", WRITERS, ids=lambda v: v[0] + " " + v[-1].rsplit(".", 1)[-1])
@pytest.mark.parametrize("where, code, text, advice", ENVIRONMENT, ids=lambda v: v if isinstance(v, str) else None)
def test_file_system_errors_are_exit_2(argv, where, code, text, advice, work, artifact, capsys, monkeypatch):
    monkeypatch.setattr(tempfile if where == "mkstemp" else os, where, _raise(code))
    err = _one_line_exit_2([a.format(w=work, a=artifact) for a in argv], capsys, text)
    assert advice in err
    assert not [f for f in os.listdir(work) if f.endswith(".tmp")]


def test_stdout_on_a_full_disk_is_exit_2(capsys, monkeypatch):
    """``resdsl passes > /dev/full``: the write fails with ENOSPC."""

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    monkeypatch.setattr("sys.stdout", Full())
    _one_line_exit_2(["passes"], capsys, "the disk is full")


def test_missing_model_directory(capsys):
    _one_line_exit_2(["show", "/nonexistent/dir/model.py"], capsys, "/nonexistent/dir/model.py")


@pytest.mark.parametrize(
    "error, expect",
    [
        (MemoryError(), "out of memory"),
        (RuntimeError("[ONNXRuntimeError] : 6 : Failed to allocate memory for requested buffer\nmore"), "out of"),
    ],
)
def test_memory_errors_are_exit_2(error, expect, capsys, monkeypatch):
    import resdsl.summary

    def boom(*a, **k):
        raise error

    monkeypatch.setattr(resdsl.summary, "summarize", boom)
    _one_line_exit_2(["show", TINY], capsys, expect)


def test_a_defect_is_exit_3_on_one_line_asking_for_a_report(capsys, monkeypatch):
    import resdsl.summary

    def bug(*a, **k):
        raise KeyError("first line\nsecond line\nthird")

    monkeypatch.setattr(resdsl.summary, "summarize", bug)
    assert main(["show", TINY]) == 3
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "please report" in err and "internal error: KeyError" in err


def test_memory_guard_refuses_before_allocating(work, artifact, capsys, monkeypatch):
    monkeypatch.setattr(resources, "available_bytes", lambda *a: 4096)  # 4 KiB free
    out = f"{work}/t.onnx"
    err = _one_line_exit_2(["compile", TINY, "-o", out], capsys, "more than the 4.0 KiB of memory available")
    assert "tiny.py:" in err and "--force" in err and not os.path.exists(out)
    _one_line_exit_2(["run", artifact, "--random", "--batch", "4"], capsys, "at batch 4")
    assert main(["compile", TINY, "-o", out, "--force"]) == 0
    assert main(["run", artifact, "--random", "--force"]) == 0


def test_absurd_image_size_is_caught_at_the_model_line(work, capsys):
    """224 -> 30000: about 110 GiB of activations, caught before any allocation, naming the line."""
    err = _one_line_exit_2(
        ["compile", RESNET, "--model", "resnet18", "--arg", "image_size=30000", "-o", f"{work}/big.onnx"],
        capsys,
        "of memory available",
    )
    assert "resnet.py:" in err and "GiB" in err


def test_estimate_matches_show(capsys):
    """The guard's activation figure is ``show``'s, scaled by the batch."""
    from resdsl.driver import CompileRequest, build_graph
    from resdsl.summary import summarize

    graph, _ = build_graph(CompileRequest(TINY, level=0))
    s = summarize(graph)
    est = resources.estimate(graph, 3)
    assert s.peak_activation_bytes * 3 == est.peak_activation_bytes
    assert est.weight_bytes == 4 * sum(v.size for v in graph.parameters.values())
    assert resources.available_bytes() is None or resources.available_bytes() > 0


NAMED = """
import resdsl
from resdsl import nn


@resdsl.model
def named():
    x = nn.input("x", (2, 4, 4))
    nn.output("../../ESCAPED", nn.relu(x))
    return nn.output("a/b", x + x)
"""


def test_output_names_never_leave_the_save_directory(tmp_path, capsys):
    model = tmp_path / "named.py"
    model.write_text(NAMED)
    (tmp_path / "deep" / "er").mkdir(parents=True)
    art = str(tmp_path / "deep" / "er" / "n.onnx")
    assert main(["compile", str(model), "-o", art]) == 0
    save = tmp_path / "deep" / "er" / "outs"
    assert main(["run", art, "--random", "--save", str(save), "--check", str(model)]) == 0
    assert sorted(os.listdir(save)) == ["..%2F..%2FESCAPED.npy", "a%2Fb.npy"]
    assert not (tmp_path / "ESCAPED.npy").exists() and not (tmp_path / "deep" / "ESCAPED.npy").exists()
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)  # run's --random, seed 0
    assert max_rel_error(np.load(save / "a%2Fb.npy"), x + x) < 1e-6
    assert "saved ../../ESCAPED to " in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, stem",
    [
        ("../x", "..%2Fx"),
        ("/etc/passwd", "%2Fetc%2Fpasswd"),
        ("a/b\\c", "a%2Fb%5Cc"),
        ("nul\x00x", "nul%00x"),
        ("100%", "100%25"),
        ("ünï", "%C3%BCn%C3%AF"),
        ("conv1.out-2_x", "conv1.out-2_x"),
    ],
)
def test_safe_filename_rule(name, stem):
    assert safe_filename(name) == stem


def test_long_names_are_cut_with_a_hash_and_stay_distinct(tmp_path):
    a, b = "y" * 1000, "y" * 999 + "z"
    sa, sb = safe_filename(a), safe_filename(b)
    assert len(sa) == 200 and sa != sb and sa.startswith("y" * 183 + "-")
    written = save_outputs({a: np.zeros(1), b: np.ones(1)}, str(tmp_path / "o"))
    assert [os.path.dirname(p) for _, p in written] == [str(tmp_path / "o")] * 2
    assert np.load(written[1][1])[0] == 1.0


@pytest.mark.parametrize("name", ["", ".", ".."])
def test_dot_names_are_refused(name, tmp_path):
    with pytest.raises(ResdslError, match="cannot be saved as a file"):
        save_outputs({name: np.zeros(1)}, str(tmp_path))


def test_names_colliding_on_case_insensitive_file_systems_are_refused(tmp_path):
    with pytest.raises(ResdslError, match="would both be saved as"):
        save_outputs({"Logits": np.zeros(1), "logits": np.zeros(1)}, str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()  # refused before writing anything
