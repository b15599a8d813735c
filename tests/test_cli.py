"""The command line: compile and run end to end, and one-line errors with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import example

from resdsl.cli import main

TINY = example("tiny.py")
RESNET = example("resnet.py")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resdsl.cli", *args], capture_output=True, text=True)


def test_compile_and_run_check(tmp_path, capsys):
    out = str(tmp_path / "r18.onnx")
    assert (
        main(
            [
                "compile",
                RESNET,
                "--model",
                "resnet18",
                "--arg",
                "image_size=64",
                "--target",
                "onnx-ort",
                "-o",
                out,
                "--verbose",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "shortcuts" in text and "wrote" in text
    assert main(["run", out, "--random", "--batch", "2", "--check", RESNET, "--model", "resnet18"]) == 0
    text = capsys.readouterr().out
    assert "output logits: shape (2, 1000)" in text
    assert "device: CPUExecutionProvider" in text
    err = float(text.split("max relative error ")[1].split()[0])
    assert err < 1e-4


def test_run_with_input_files(tmp_path, capsys):
    out = str(tmp_path / "t.onnx")
    assert main(["compile", TINY, "--target", "onnx", "-o", out]) == 0
    x = np.random.default_rng(3).standard_normal((3, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert (
        main(["run", out, "--input", f"image={tmp_path / 'x.npy'}", "--check", TINY, "--save", str(tmp_path / "outs")])
        == 0
    )
    import resdsl

    want = resdsl.interpret(resdsl.load(TINY), {"image": x})["logits"]
    assert resdsl.max_rel_error(np.load(tmp_path / "outs" / "logits.npy"), want) < 1e-4


def test_check_fails_with_exit_1_on_a_different_model(tmp_path, capsys):
    out = str(tmp_path / "t.onnx")
    assert main(["compile", TINY, "--target", "onnx", "-o", out]) == 0
    assert main(["run", out, "--random", "--check", TINY, "--arg", "num_classes=10"]) == 0
    # The same architecture with another seed's weights is a different function.
    other = tmp_path / "other.py"
    other.write_text(open(TINY).read().replace("@resdsl.model", "@resdsl.model(seed=7)"))
    assert main(["run", out, "--random", "--check", str(other)]) == 1
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["compile", "missing.py", "--target", "onnx", "-o", "x.onnx"], "does not exist"),
        (["compile", RESNET, "--target", "onnx", "-o", "x.onnx"], "several models"),
        (["compile", RESNET, "--model", "resnet7", "--target", "onnx", "-o", "x.onnx"], "has no model 'resnet7'"),
        (["compile", TINY, "--target", "tpu", "-o", "x.onnx"], "unknown target 'tpu'"),
        (["compile", TINY, "--arg", "depth=3", "--target", "onnx", "-o", "x.onnx"], "unexpected keyword argument"),
        (["run", "nothing.onnx", "--random"], "does not exist"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path, args, message):
    args = [a if a != "x.onnx" else str(tmp_path / "x.onnx") for a in args]
    result = cli(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("resdsl: error: ") and message in lines[0], result.stderr
    assert all(line.startswith("    ") for line in lines[1:]), result.stderr  # only the source line it points at
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "x.onnx")


def test_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import resdsl\n\n@resdsl.model\ndef m(:\n    pass\n")
    result = cli("compile", str(bad), "--target", "onnx", "-o", str(tmp_path / "x.onnx"))
    assert result.returncode == 2
    assert f"{bad}:4: syntax error" in result.stderr


def test_unreadable_artifact(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    result = cli("run", str(junk), "--random")
    assert result.returncode == 2 and "cannot load" in result.stderr and "Traceback" not in result.stderr


def test_wrong_input_shape(tmp_path):
    out = str(tmp_path / "t.onnx")
    assert main(["compile", TINY, "--target", "onnx", "-o", out]) == 0
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    result = cli("run", out, "--input", f"image={tmp_path / 'x.npy'}")
    assert result.returncode == 2 and "has shape (1, 3, 16, 16)" in result.stderr


def test_debug_shows_traceback(tmp_path):
    result = cli("--debug", "compile", "missing.py", "--target", "onnx", "-o", str(tmp_path / "x.onnx"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_failed_compile_leaves_no_file(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import resdsl\nfrom resdsl import nn\n\n@resdsl.model\ndef m():\n"
        "    x = nn.input('x', (3, 32, 32))\n    return nn.output('y', nn.conv2d(x, 4, 3, stride=3) + x)\n"
    )
    out = tmp_path / "m.onnx"
    assert cli("compile", str(bad), "--target", "onnx", "-o", str(out)).returncode == 2
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_help_is_fast_and_lazy():
    code = "import sys, resdsl.cli; resdsl.cli.build_parser(); print(any(m in sys.modules for m in ('tvm', 'onnxruntime', 'onnx')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_dump_after_writes_numbered_text_and_dot(tmp_path, capsys):
    out, dump = str(tmp_path / "t.onnx"), tmp_path / "dump"
    args = ["compile", TINY, "--target", "onnx", "-o", out, "--dump-dir", str(dump)]
    assert main([*args, "--dump-after", "all"]) == 0
    names = sorted(os.listdir(dump))
    assert names[:4] == ["000_input.dot", "000_input.txt", "001_shortcuts.dot", "001_shortcuts.txt"]
    folded = (dump / "005_fold_batchnorm.txt").read_text()
    assert "batch_norm(" not in folded and "layer1.0.downsample.0 = conv2d" in folded
    assert "batch_norm(" in (dump / "001_shortcuts.txt").read_text()
    assert (dump / "006_fuse_add.dot").read_text().startswith('digraph "tiny"')
    only = tmp_path / "only"
    assert main([*args[:-2], "--dump-dir", str(only), "--dump-after", "fuse_add"]) == 0
    assert sorted(os.listdir(only)) == ["000_input.dot", "000_input.txt", "006_fuse_add.dot", "006_fuse_add.txt"]


def test_unknown_dump_pass_and_no_model(tmp_path):
    result = cli("compile", TINY, "--target", "onnx", "-o", str(tmp_path / "x.onnx"), "--dump-after", "nonsense")
    assert result.returncode == 2 and "--dump-after nonsense" in result.stderr
    empty = tmp_path / "empty.py"
    empty.write_text("import resdsl\n")
    result = cli("compile", str(empty), "--target", "onnx", "-o", str(tmp_path / "x.onnx"))
    assert result.returncode == 2 and "defines no @resdsl.model" in result.stderr


def test_passes_lists_levels(capsys):
    assert main(["passes"]) == 0
    text = capsys.readouterr().out
    assert "fold_batchnorm" in text and "-O2: shortcuts, dce, eliminate_identity, cse, fold_batchnorm, fuse_add" in text


CIFAR = [example("cifar_resnet.py"), "--model", "resnet20", "--arg", "image_size=8"]


@pytest.mark.parametrize(
    "model,flags,size",
    [
        ([RESNET, "--model", "resnet18", "--arg", "image_size=32"], ["--shortcut", "C"], 32),
        ([TINY], ["--residual-scale", "0.5"], 32),
        (CIFAR, ["--shortcut", "B"], 8),
    ],
)
def test_check_rebuilds_the_function_the_artifact_was_compiled_as(tmp_path, model, flags, size):
    from resdsl.backends import open_artifact

    out, plain = str(tmp_path / "m.onnx"), str(tmp_path / "plain.onnx")
    assert main(["compile", *model, "--target", "onnx", "-o", out, *flags]) == 0
    assert main(["run", out, "--random", "--check", model[0]]) == 0
    assert main(["compile", *model, "--target", "onnx", "-o", plain]) == 0
    x = {"image": np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)}
    a, b = open_artifact(out).run(x)["logits"], open_artifact(plain).run(x)["logits"]
    assert np.abs(a - b).max() > 1e-3 * np.abs(b).max()  # the flags did change the function
