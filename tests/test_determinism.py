"""Determinism: the same model file compiled in two processes with different hash seeds gives
byte-identical artifacts (.onnx of both flavours; TVM's .so and its sidecar)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

MODEL = """
import resdsl
from resdsl import nn


@resdsl.model
def small(channels: int = 8):
    x = nn.input("x", (3, 16, 16))
    y = nn.relu(nn.batch_norm(nn.conv2d(x, channels, 3, padding=1, bias=False, name="conv1"), name="bn1"))
    y = nn.batch_norm(nn.conv2d(y, channels, 3, padding=1, bias=False, name="conv2"), name="bn2")
    y = nn.relu(y + x)  # a projected shortcut: 3 -> 8 channels
    return nn.output("logits", nn.linear(nn.flatten(nn.global_avg_pool(y)), 5, name="fc"))
"""


def _compile(model: str, target: str, out: str, seed: str) -> None:
    env = dict(os.environ, PYTHONHASHSEED=seed)
    cmd = [sys.executable, "-m", "resdsl.cli", "compile", model, "--target", target, "-o", out]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("target, ext", [("onnx", ".onnx"), ("onnx-ort", ".onnx"), ("llvm", ".so")])
def test_two_processes_two_hash_seeds_same_bytes(target, ext, tmp_path):
    model = str(tmp_path / "small.py")
    with open(model, "w") as f:
        f.write(MODEL)
    files = []
    for seed in ("1", "2"):
        (tmp_path / seed).mkdir()
        out = str(tmp_path / seed / f"small{ext}")  # the same base name: the sidecar records it
        _compile(model, target, out, seed)
        files.append(out)
    a, b = files
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read(), f"{target}: {a} and {b} differ"
    if ext == ".so":
        side = [f[: -len(".so")] + ".json" for f in files]
        with open(side[0], "rb") as fa, open(side[1], "rb") as fb:
            assert fa.read() == fb.read()
