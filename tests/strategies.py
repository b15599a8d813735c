"""Hypothesis strategies: random residual networks written in the public DSL.

A drawn ``NetSpec`` is plain data (so hypothesis shrinks it to few, narrow blocks);
``build(spec)`` turns it into a model with ``@resdsl.model`` on a closure and returns
the raw graph. Block kinds: ResNet basic and bottleneck, pre-activation, and a dense
residual MLP; widths and strides vary, so the shortcuts pass has work under A, B and C.
Each block may carry "extras" that give one optimisation pass something to do (or to
refuse): no-op ops, duplicated subexpressions, dead layers, add trees, biased
convolutions and convolutions with a second use.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

import resdsl
from resdsl import nn
from resdsl.ir import Graph

CONV_KINDS = ("basic", "bottleneck", "preact")
EXTRAS = ("identity", "dup", "dead", "tree", "bias", "shared")
SIZE = 8  # spatial size of conv inputs: small keeps the interpreter fast


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


def _block(x, b: Block, dense: bool):
    ex = b.extras
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

    @resdsl.model(shortcut=spec.shortcut)
    def random_net():
        if spec.dense:
            x = nn.linear(nn.input("x", (5,)), 4, name="stem")
        else:
            x = _conv(nn.input("x", (3, SIZE, SIZE)), 4, 3, name="stem")
        x = nn.relu(nn.batch_norm(x, name="stem_bn"))
        for i, b in enumerate(spec.blocks):
            with nn.scope(f"layer.{i}"):
                x = _block(x, b, spec.dense)
        if not spec.dense:
            x = nn.flatten(nn.global_avg_pool(x), name="flatten")
        return nn.output("y", nn.linear(x, 3, name="head"))

    return random_net.build()
