"""Hypothesis strategies: random residual networks written in the public DSL.

A drawn ``NetSpec`` is plain data (so hypothesis shrinks it to few, narrow blocks);
``build(spec)`` turns it into a model with ``@resdsl.model`` on a closure and returns
the raw graph. Block kinds: ResNet basic and bottleneck, pre-activation, and a dense
residual MLP; widths and strides vary, so the shortcuts pass has work under A, B and C.
Each block may carry "extras" that give one optimisation pass something to do (or to
refuse): no-op ops, duplicated subexpressions, dead layers, add trees, biased
convolutions and convolutions with a second use.

``wide_net_specs()`` draws from the whole space for the differential campaign
(benchmarks/differential.py): every block of ``resdsl.blocks`` besides these, extras
using every op of the registry, odd and rectangular sizes down to 1, strides 1 to 3,
token inputs, batch 1 to 4 and an -O level. ``net_specs()`` keeps its narrower space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import resdsl
from resdsl import blocks, nn
from resdsl.ir import Graph

CONV_KINDS = ("basic", "bottleneck", "preact")
EXTRAS = ("identity", "dup", "dead", "tree", "bias", "shared")
SIZE = 8  # spatial size of conv inputs: small keeps the interpreter fast
# The wide space: blocks of resdsl.blocks, and extras that reach the rest of the registry.
LIB_CONV_KINDS = ("lib_basic_se", "resnext", "wide", "preact_basic", "preact_bottleneck")
DENSE_KINDS = ("mlp", "transformer", "residual_mlp", "highway")
WIDE_EXTRAS = EXTRAS + ("silu", "gelu", "sub", "softmax", "concat", "pool", "gate", "matmul", "norm")


@dataclass(frozen=True)
class Block:
    kind: str  # basic, bottleneck, preact or mlp
    width: int  # output channels (features for mlp)
    stride: int
    extras: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetSpec:
    dense: bool
    blocks: tuple[Block, ...]
    shortcut: str  # A, B or C
    residual_scale: str | None = None
    input_shape: tuple[int, ...] = ()  # () : (5,) dense, (3, SIZE, SIZE) conv
    stem: int = 4  # channels (features) after the stem
    batch: int = 2
    level: int = 2


@st.composite
def net_specs(draw, max_blocks: int = 3) -> NetSpec:
    dense = draw(st.booleans())
    shortcut = draw(st.sampled_from("BAC"))
    channels, size = 4, SIZE
    blocks = []
    for _ in range(draw(st.integers(1, max_blocks))):
        kind = "mlp" if dense else draw(st.sampled_from(CONV_KINDS))
        width = draw(st.sampled_from((4, 2, 6, 8)))
        if shortcut == "A":
            width = max(width, channels)  # option A pads channels, it cannot drop them
        stride = 1 if dense or size < 4 else draw(st.sampled_from((1, 2)))
        extras = tuple(sorted(draw(st.sets(st.sampled_from(EXTRAS), max_size=2))))
        blocks.append(Block(kind, width, stride, extras))
        channels, size = width, -(-size // stride)
    scale = draw(st.sampled_from((None, None, "inv-depth", "0.5")))
    return NetSpec(dense, tuple(blocks), shortcut, scale)


def _out_width(kind: str, width: int) -> int:
    """Output channels of a library block of ``width`` planes (bottlenecks expand by 4)."""
    return width * 4 if kind in ("resnext", "wide", "preact_bottleneck") else width


@st.composite
def wide_net_specs(draw, max_blocks: int = 4) -> NetSpec:
    """Any network of the wide space; hypothesis shrinks toward one narrow basic block."""
    dense = draw(st.booleans())
    shortcut = draw(st.sampled_from("BAC"))
    stem = draw(st.sampled_from((4, 2, 3, 5, 8)))
    if dense:
        tokens = draw(st.sampled_from((0, 1, 3, 4)))
        features = draw(st.integers(1, 7))
        shape = (tokens, features) if tokens else (features,)
    else:
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 13)), draw(st.integers(1, 13)))
    channels, grid = stem, list(shape[1:]) if not dense else []
    specs = []
    for _ in range(draw(st.integers(1, max_blocks))):
        if dense:
            kind = draw(st.sampled_from(DENSE_KINDS if len(shape) == 2 else ("mlp", "residual_mlp", "highway")))
        else:
            kind = draw(st.sampled_from(CONV_KINDS + LIB_CONV_KINDS))
        width = draw(st.sampled_from((4, 2, 6, 8, 1, 3, 5)))
        if kind in ("highway", "transformer"):
            width = channels  # both keep the width; attention heads must divide it
        if shortcut == "A":
            while _out_width(kind, width) < channels:
                width += 1
        stride = 1 if dense else draw(st.sampled_from((1, 2, 1, 3)))
        extras = tuple(sorted(draw(st.sets(st.sampled_from(WIDE_EXTRAS), max_size=3))))
        specs.append(Block(kind, width, stride, extras))
        channels = width if kind in CONV_KINDS + DENSE_KINDS else _out_width(kind, width)
        grid = [-(-d // stride) for d in grid]
    scale = draw(st.sampled_from((None, None, "inv-depth", "0.5")))
    batch = draw(st.integers(1, 4))
    level = draw(st.sampled_from((2, 1, 0)))
    return NetSpec(dense, tuple(specs), shortcut, scale, shape, stem, batch, level)


# ---------------------------------------------------------------- building


def _conv(x, width, kernel=3, stride=1, bias=False, name="conv"):
    return nn.conv2d(x, width, kernel, stride=stride, padding=kernel // 2, bias=bias, name=name)


def _decorate(t, extras: tuple[str, ...], dense: bool):
    """Wrap a branch value with the block's extras; the value of the branch is unchanged up to
    the extras' own arithmetic (tree doubles and adds, dup doubles)."""
    if "identity" in extras:
        t = nn.identity(t)
        t = nn.reshape(t, ("N",) + tuple(t.shape[1:]))
        t = nn.transpose(t, tuple(range(len(t.shape))))
        t = nn.pad(t, (0,) * (2 * len(t.shape)))
        if not dense:
            t = nn.avg_pool2d(t, 1, stride=1)
    if "dup" in extras:
        t = nn.relu(t) + nn.relu(t)
    if "tree" in extras:
        t = (nn.sigmoid(t) + t) + (nn.relu(t) + t)
    if "silu" in extras:
        t = nn.silu(t)
    if "gelu" in extras:
        t = nn.gelu(t)
    if "sub" in extras:
        t = t - nn.sigmoid(t) * 0.5
    if "softmax" in extras:
        t = nn.softmax(t, axis=1) * float(t.shape[1])
    if "gate" in extras:  # a broadcast multiplication by a value computed from t: never a join
        t = blocks.squeeze_excite(t, 2, name="x_se") if not dense else t * nn.sigmoid(nn.linear(t, 1, name="x_gate"))
    if "norm" in extras:
        t = nn.layer_norm(t, name="x_norm")
    if "matmul" in extras:
        d = t.shape[-1]
        w = nn.constant(np.eye(d, dtype=np.float32) + 0.1, name="x_mix")
        t = nn.matmul(t, w)
    if "pool" in extras and not dense:
        t = nn.max_pool2d(t, 3, stride=1, padding=1) + nn.avg_pool2d(t, 3, stride=1, padding=1)
    if "concat" in extras:
        c = nn.concat([t, nn.relu(t)], axis=1 if not dense else len(t.shape) - 1)
        t = nn.linear(c, t.shape[-1], name="x_squeeze") if dense else _conv(c, t.shape[1], 1, name="x_squeeze")
    if "dead" in extras:  # computed, never used: dce's work
        if dense:
            nn.linear(t, 3, name="dead")
        else:
            _conv(t, 3, 1, name="dead")
    return t


def _branch_unit(x, width, stride, extras, dense, index, preact=False):
    """One (norm, act, weight layer) unit; "shared" gives the layer a second use past its norm."""
    bias = "bias" in extras
    if preact:
        x = nn.relu(nn.batch_norm(x, name=f"bn{index}"))
    y = nn.linear(x, width, bias=bias, name=f"fc{index}") if dense else _conv(x, width, 3, stride, bias, f"conv{index}")
    if preact:
        return y
    z = nn.batch_norm(y, name=f"bn{index}")
    if "shared" in extras and index == 1:
        z = z + nn.sigmoid(y)
    return z


def _library_block(x, b: Block):
    """A block of resdsl.blocks, its branch decorated where the block leaves room (before the add)."""
    if b.kind == "lib_basic_se":
        return blocks.basic(x, b.width, b.stride, se_reduction=2)
    if b.kind == "resnext":
        return blocks.bottleneck(x, b.width, b.stride, groups=2, width_per_group=64)
    if b.kind == "wide":
        return blocks.wide(x, b.width, b.stride)
    if b.kind == "preact_basic":
        return blocks.preact_basic(x, b.width, b.stride)
    if b.kind == "preact_bottleneck":
        return blocks.preact_bottleneck(x, b.width, b.stride)
    if b.kind == "transformer":
        return blocks.transformer_block(x, 2 if x.shape[-1] % 2 == 0 else 1, mlp_ratio=1.5)
    if b.kind == "residual_mlp":
        return blocks.residual_mlp(x, b.width, hidden=3)
    return blocks.highway(x)


def _block(x, b: Block, dense: bool):
    ex = b.extras
    if b.kind not in CONV_KINDS + ("mlp",):
        return _decorate(_library_block(x, b), ex, dense)
    if b.kind == "preact":
        y = _branch_unit(x, b.width, b.stride, ex, dense, 1, preact=True)
        y = _decorate(y, ex, dense)
        y = _branch_unit(y, b.width, 1, ex, dense, 2, preact=True)
        return y + x
    if b.kind == "bottleneck":
        mid = max(1, b.width // 2)
        y = nn.relu(nn.batch_norm(_conv(x, mid, 1, bias="bias" in ex, name="conv1"), name="bn1"))
        y = nn.relu(_branch_unit(y, mid, b.stride, ex, dense, 2))
        y = _decorate(y, ex, dense)
        y = nn.batch_norm(_conv(y, b.width, 1, name="conv3"), name="bn3")
        return nn.relu(y + x)
    # basic (conv) and mlp (dense): two units, relu(F(x) + x)
    y = nn.relu(_branch_unit(x, b.width, b.stride, ex, dense, 1))
    y = _decorate(y, ex, dense)
    y = _branch_unit(y, b.width, 1, ex, dense, 2)
    return nn.relu(y + x)


def build(spec: NetSpec) -> Graph:
    """The raw graph (projections pending) of the network ``spec`` describes."""

    shape = spec.input_shape or ((5,) if spec.dense else (3, SIZE, SIZE))

    @resdsl.model(shortcut=spec.shortcut)
    def random_net():
        if spec.dense:
            x = nn.linear(nn.input("x", shape), spec.stem, name="stem")
        else:
            x = _conv(nn.input("x", shape), spec.stem, 3, name="stem")
        x = nn.relu(nn.batch_norm(x, name="stem_bn") if len(shape) < 2 or not spec.dense else x)
        for i, b in enumerate(spec.blocks):
            with nn.scope(f"layer.{i}"):
                x = _block(x, b, spec.dense)
        if not spec.dense:
            x = nn.flatten(nn.global_avg_pool(x), name="flatten")
        elif len(x.shape) == 3:
            x = nn.flatten(x, name="flatten")
        return nn.output("y", nn.linear(x, 3, name="head"))

    return random_net.build()
