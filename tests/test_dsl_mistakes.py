"""Every DSL mistake a new user made (issue 13) is one `resdsl: error:` line naming the model file
and line and what to do, exit 2, and no artifact; what PyTorch users write is accepted."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from resdsl.backends import emit, make_options, open_artifact

import resdsl
from resdsl.cli import main

HEADER = "import resdsl\nfrom resdsl import nn\n\n\n@resdsl.model\ndef m():\n"


def write(tmp_path, body: str) -> tuple[str, int]:
    """A model file whose marked line (``# <-``) is the mistake; returns the path and that line."""
    text = HEADER + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"
    path = tmp_path / "model.py"
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "# <-" in t)
    return str(path), line


MISTAKES = {
    "unknown op": ('x = nn.input("x", (4,))\nreturn nn.output("y", nn.relu7(x))  # <-', "resdsl.nn has no 'relu7'"),
    "linear in, out": (
        'x = nn.input("x", (32,))\nreturn nn.output("y", nn.linear(x, 32, 64))  # <-',
        "pass the others by keyword (bias=",
    ),
    "layer_norm shape": (
        'x = nn.input("x", (4, 8))\nreturn nn.output("y", nn.layer_norm(x, (16,)))  # <-',
        "normalized_shape=(16,) does not match",
    ),
    "stride 0": (
        'x = nn.input("x", (3, 8, 8))\nreturn nn.output("y", nn.conv2d(x, 8, 3, stride=0))  # <-',
        "stride=0 must be at least 1",
    ),
    "channels as text": (
        'x = nn.input("x", (3, 8, 8))\nreturn nn.output("y", nn.conv2d(x, "8", 3))  # <-',
        "out_channels='8' must be an int",
    ),
    "flatten axis": (
        'x = nn.input("x", (3, 8, 8))\nreturn nn.output("y", nn.flatten(x, axis=9))  # <-',
        "start_dim=9 is out of range",
    ),
    "softmax axis": (
        'x = nn.input("x", (3, 8))\nreturn nn.output("y", nn.softmax(x, axis=5))  # <-',
        "axis=5 is out of range",
    ),
    "zero channels": (
        'x = nn.input("x", (3, 8, 8))\nreturn nn.output("y", nn.conv2d(x, 0, 3))  # <-',
        "out_channels=0 must be at least 1",
    ),
    "input twice": ('x = nn.input("image", (4,))\ny = nn.input("image", (4,))  # <-\nreturn x + y', "declared twice"),
    "output like input": ('x = nn.input("image", (4,))\nreturn nn.output("image", x)  # <-', "named like an input"),
    "scope None": (
        'x = nn.input("x", (4,))\nwith nn.scope(None):  # <-\n    x = nn.linear(x, 4)\nreturn x',
        "is not a scope name",
    ),
    "layer twice": (
        'x = nn.input("x", (4,))\nx = nn.linear(x, 4, name="fc")\nx = nn.linear(x, 4, name="fc")  # <-\nreturn x',
        "defined twice",
    ),
    "kernel too large": (
        'x = nn.input("x", (3, 4, 4))\nreturn nn.conv2d(x, 8, 7)  # <-',
        "larger than the padded input",
    ),
    "groups": ('x = nn.input("x", (3, 8, 8))\nreturn nn.conv2d(x, 8, 3, groups=2)  # <-', "must divide by groups=2"),
    "negative padding": (
        'x = nn.input("x", (3, 8, 8))\nreturn nn.conv2d(x, 8, 3, padding=-1)  # <-',
        "padding=-1 must be at least 0",
    ),
    "empty name": ('x = nn.input("x", (4,))\nreturn nn.linear(x, 4, name="")  # <-', "must be a non-empty string"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_mistake_is_one_error_at_the_line_and_writes_nothing(case, tmp_path, capsys):
    body, message = MISTAKES[case]
    path, line = write(tmp_path, body)
    out = tmp_path / "out.onnx"
    capsys.readouterr()
    assert main(["compile", path, "--target", "onnx", "-o", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"resdsl: error: {path}:{line}:"), err
    assert message in err[0], err
    assert all(e.startswith("    ") for e in err[1:]), err  # only the source line, indented
    assert "internal error" not in err[0] and not out.exists()


ACCEPTED = """
x = nn.input("x", (8, 6, 6))
a = nn.conv2d(x, 8, 3, padding="same")
b = nn.max_pool2d(a, 3, 2, ceil_mode=True)
c = nn.softmax(nn.flatten(b, 1), dim=-1)
head = nn.Linear(c.shape[-1], 8, name="head")  # one layer, applied twice: weights shared
d = head(c) + head(c * 0.5)
e = x[:, :4] + x[:, 4:]
f = e.reshape(-1, 4 * 36).mean(dim=1, keepdim=True)
g = nn.relu6(-d) ** 2 / (f * f + 1.0) @ nn.parameter("w", (8, 3), init="normal")
return nn.output("y", nn.hardswish(g)), nn.output("tokens", nn.embedding(nn.input("ids", (5,), dtype="int64"), 11, 4))
"""


def test_what_a_pytorch_user_writes_builds_and_runs(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(HEADER + textwrap.indent(textwrap.dedent(ACCEPTED).strip("\n"), "    ") + "\n")
    g = resdsl.load(str(path))
    assert sum(1 for k in g.state_dict() if k.startswith("head.")) == 2  # shared: one weight, one bias
    out = resdsl.interpret(g, resdsl.random_inputs(g, batch=2))
    assert out["y"].shape == (2, 3) and out["tokens"].shape == (2, 5, 4) and np.isfinite(out["y"]).all()
    for target in ("onnx", "llvm"):  # and every backend computes the same
        art = tmp_path / f"m{'.onnx' if target == 'onnx' else '.so'}"
        emit(g, str(art), make_options(target))
        feeds = resdsl.random_inputs(g, batch=2, seed=3)
        got, want = open_artifact(str(art)).run(feeds), resdsl.interpret(g, feeds)
        for name in want:
            assert resdsl.max_rel_error(got[name], want[name]) < 1e-4, (target, name)
