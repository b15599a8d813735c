"""The block library: torchvision names, the compiler's projections, and the maths of each block
checked against independent NumPy code on random inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import resdsl
from resdsl import blocks, nn
from resdsl.numerics import TOLERANCE


def build(fn, shape, **kw):
    """Canonical graph of a one-input model whose body is ``fn(x)`` inside scope ``blk``."""

    def body():
        x = nn.input("x", shape)
        with nn.scope("blk"):
            y = fn(x, **kw)
        return nn.output("y", y)

    body.__name__ = fn.__name__
    return resdsl.canonical(resdsl.model(body))


def run(graph, batch=2, seed=0):
    feeds = resdsl.random_inputs(graph, batch, seed)
    return feeds, resdsl.interpret(graph, feeds)["y"]


def perturb(graph, seed=1):
    """Random batch-norm statistics and scales, so a test cannot pass because BN is the identity."""
    rng = np.random.default_rng(seed)
    for k, v in graph.parameters.items():
        if k.endswith("running_var"):
            graph.parameters[k] = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
        elif k.endswith(("running_mean", ".bias")) or (k.endswith(".weight") and v.ndim == 1):
            graph.parameters[k] = rng.normal(0, 0.5, v.shape).astype(np.float32)


def ln(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps) * w + b


def gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def lin(p, name, x):
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def test_bottleneck_names_follow_torchvision_and_stride_sits_on_the_3x3():
    g = build(blocks.bottleneck, (64, 8, 8), planes=32, stride=2)
    convs = {n.name: n for n in g.nodes() if n.op == "conv2d"}
    assert set(convs) == {"blk.conv1", "blk.conv2", "blk.conv3", "blk.downsample.0"}
    assert convs["blk.conv2"].attrs["stride"] == (2, 2) and convs["blk.conv1"].attrs["stride"] == (1, 1)
    assert g.parameters["blk.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert {"blk.bn1.running_var", "blk.bn3.weight", "blk.downsample.1.running_mean"} <= set(g.state_dict())


def test_blocks_never_build_their_own_downsample():
    for fn, kw in [
        (blocks.basic, {"planes": 32, "stride": 2}),
        (blocks.bottleneck, {"planes": 16, "stride": 2}),
        (blocks.preact_bottleneck, {"planes": 16, "stride": 2}),
    ]:

        def body(fn=fn, kw=kw):
            x = nn.input("x", (16, 8, 8))
            with nn.scope("blk"):
                return nn.output("y", fn(x, **kw))

        raw = resdsl.model(body).build()
        assert not [n for n in raw.nodes() if "downsample" in n.name]
        projected = resdsl.passes.canonicalize(raw)
        assert [n.name for n in projected.nodes() if n.role == "projection" and n.op != "param"] == [
            "blk.downsample.0",
            "blk.downsample.1",
        ]


def test_resnext_and_wide_widths():
    g = build(blocks.resnext, (256, 4, 4), planes=64)
    assert g.parameters["blk.conv2.weight"].shape == (128, 4, 3, 3)  # 32 groups of 4
    g = build(blocks.wide, (256, 4, 4), planes=64)
    assert g.parameters["blk.conv2.weight"].shape == (128, 128, 3, 3)


def conv(x, w, stride=1, pad=0, groups=1):
    from resdsl.ops import conv2d_ref

    return conv2d_ref(x, w, None, stride=stride, padding=pad, groups=groups)


def bn(p, name, x):
    s = p[f"{name}.weight"] / np.sqrt(p[f"{name}.running_var"] + 1e-5)
    return (x - p[f"{name}.running_mean"][:, None, None]) * s[:, None, None] + p[f"{name}.bias"][:, None, None]


def test_basic_block_with_projection_matches_numpy():
    g = build(blocks.basic, (8, 6, 6), planes=16, stride=2)
    perturb(g)
    feeds, got = run(g)
    p, x = g.parameters, feeds["x"].astype(np.float64)
    y = np.maximum(bn(p, "blk.bn1", conv(x, p["blk.conv1.weight"], 2, 1)), 0)
    y = bn(p, "blk.bn2", conv(y, p["blk.conv2.weight"], 1, 1))
    s = bn(p, "blk.downsample.1", conv(x, p["blk.downsample.0.weight"], 2))
    assert resdsl.max_rel_error(got, np.maximum(y + s, 0)) < TOLERANCE


def test_preact_bottleneck_projects_the_preactivated_input():
    g = build(blocks.preact_bottleneck, (8, 6, 6), planes=4, stride=2)
    perturb(g)
    feeds, got = run(g)
    p, x = g.parameters, feeds["x"].astype(np.float64)
    a = np.maximum(bn(p, "blk.bn1", x), 0)
    y = conv(a, p["blk.conv1.weight"])
    y = conv(np.maximum(bn(p, "blk.bn2", y), 0), p["blk.conv2.weight"], 2, 1)
    y = conv(np.maximum(bn(p, "blk.bn3", y), 0), p["blk.conv3.weight"])
    s = bn(p, "blk.downsample.1", conv(a, p["blk.downsample.0.weight"], 2))
    assert resdsl.max_rel_error(got, y + s) < TOLERANCE


def test_squeeze_excite_matches_numpy():
    g = build(blocks.squeeze_excite, (32, 5, 5), reduction=4)
    feeds, got = run(g)
    p, x = g.parameters, feeds["x"].astype(np.float64)
    s = x.mean(axis=(2, 3), keepdims=True)
    s = np.maximum(conv(s, p["blk.se.fc1.weight"]) + p["blk.se.fc1.bias"][:, None, None], 0)
    s = 1 / (1 + np.exp(-(conv(s, p["blk.se.fc2.weight"]) + p["blk.se.fc2.bias"][:, None, None])))
    assert resdsl.max_rel_error(got, x * s) < TOLERANCE


def mhsa(p, name, x, heads):
    n, t, d = x.shape
    hd = d // heads

    def split(v):
        return v.reshape(n, t, heads, hd).transpose(0, 2, 1, 3)

    q, k, v = (split(lin(p, f"{name}.{w}", x)) for w in "qkv")
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    return lin(p, f"{name}.proj", (a @ v).transpose(0, 2, 1, 3).reshape(n, t, d))


@pytest.mark.parametrize("heads", [1, 4])
def test_transformer_block_is_pre_ln_attention_then_mlp(heads):
    g = build(blocks.transformer_block, (7, 16), heads=heads, mlp_ratio=2.0)
    perturb(g)
    feeds, got = run(g)
    p, x = g.parameters, feeds["x"].astype(np.float64)
    x = x + mhsa(p, "blk.attn", ln(x, p["blk.norm1.weight"], p["blk.norm1.bias"], 1e-6), heads)
    h = lin(p, "blk.mlp.fc1", ln(x, p["blk.norm2.weight"], p["blk.norm2.bias"], 1e-6))
    h = gelu(h)
    assert resdsl.max_rel_error(got, x + lin(p, "blk.mlp.fc2", h)) < TOLERANCE


def test_attention_heads_must_divide_the_width():
    with pytest.raises(resdsl.ResdslError, match="heads=3"):
        build(blocks.transformer_block, (4, 16), heads=3)


def test_residual_mlp_projects_with_a_dense_proj():
    g = build(blocks.residual_mlp, (12,), features=20, hidden=8)
    assert g.parameters["blk.proj.weight"].shape == (20, 12) and "blk.proj.bias" not in g.parameters
    perturb(g)
    feeds, got = run(g)
    p, x = g.parameters, feeds["x"].astype(np.float64)
    h = lin(p, "blk.fc1", ln(x, p["blk.norm.weight"], p["blk.norm.bias"], 1e-5))
    h = gelu(h)
    assert resdsl.max_rel_error(got, lin(p, "blk.fc2", h) + x @ p["blk.proj.weight"].T) < TOLERANCE


def test_highway_gates_between_transform_and_carry():
    g = build(blocks.highway, (10,), gate_bias=-1.5)
    feeds, got = run(g)
    p, x = g.parameters, feeds["x"].astype(np.float64)
    h = np.maximum(lin(p, "blk.plain", x), 0)
    t = 1 / (1 + np.exp(-(lin(p, "blk.gate", x) - 1.5)))
    assert resdsl.max_rel_error(got, t * h + (1 - t) * x) < TOLERANCE
