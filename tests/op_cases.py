"""One small case per registered op, shared by every backend's op tests."""

from __future__ import annotations

import numpy as np

N = "N"


def op_cases() -> list[tuple[str, str, list, dict, dict]]:
    """(case id, op, input shapes, attrs, params) — params are shapes (random) or arrays."""
    rng = np.random.default_rng(0)
    x4 = (N, 4, 9, 9)
    return [
        ("conv2d", "conv2d", [x4], {"stride": 2, "padding": 1}, {"w": (6, 4, 3, 3), "b": (6,)}),
        ("conv2d_nobias_dil", "conv2d", [x4], {"dilation": 2, "padding": 2}, {"w": (5, 4, 3, 3)}),
        ("conv2d_groups", "conv2d", [x4], {"groups": 2, "padding": 1}, {"w": (6, 2, 3, 3), "b": (6,)}),
        ("conv2d_rect", "conv2d", [x4], {"stride": (1, 2), "padding": (0, 1)}, {"w": (3, 4, 3, 1)}),
        (
            "fused_conv_relu",
            "fused_conv",
            [x4, "w", "b", (N, 6, 9, 9)],
            {"padding": 1, "activation": "relu"},
            {"w": (6, 4, 3, 3), "b": (6,)},
        ),
        ("fused_conv_none", "fused_conv", [x4], {"padding": 1}, {"w": (6, 4, 3, 3), "b": (6,)}),
        (
            "fused_conv_sigmoid",
            "fused_conv",
            [x4],
            {"stride": 2, "activation": "sigmoid"},
            {"w": (6, 4, 1, 1), "b": (6,)},
        ),
        (
            "batch_norm",
            "batch_norm",
            [x4],
            {"eps": 1e-3},
            {"s": (4,), "b": (4,), "m": (4,), "v": rng.uniform(0.5, 2, 4).astype(np.float32)},
        ),
        ("layer_norm", "layer_norm", [(N, 5, 8)], {}, {"s": (8,), "b": (8,)}),
        ("relu", "relu", [x4], {}, {}),
        ("gelu", "gelu", [x4], {}, {}),
        ("sigmoid", "sigmoid", [x4], {}, {}),
        ("silu", "silu", [x4], {}, {}),
        ("identity", "identity", [x4], {}, {}),
        ("softmax", "softmax", [(N, 3, 7)], {"axis": -1}, {}),
        ("softmax_axis1", "softmax", [(N, 3, 7)], {"axis": 1}, {}),
        ("max_pool2d", "max_pool2d", [x4], {"kernel": 3, "stride": 2, "padding": 1}, {}),
        ("avg_pool2d", "avg_pool2d", [x4], {"kernel": 3, "stride": 2, "padding": 1}, {}),
        ("avg_pool2d_k1", "avg_pool2d", [x4], {"kernel": 1, "stride": 2}, {}),
        ("global_avg_pool", "global_avg_pool", [x4], {}, {}),
        ("flatten", "flatten", [x4], {"axis": 1}, {}),
        ("flatten_axis2", "flatten", [x4], {"axis": 2}, {}),
        ("linear", "linear", [(N, 7)], {}, {"w": (5, 7), "b": (5,)}),
        ("linear_3d", "linear", [(N, 3, 7)], {}, {"w": (5, 7), "b": (5,)}),
        ("linear_nobias", "linear", [(N, 7)], {}, {"w": (5, 7)}),
        ("matmul", "matmul", [(N, 2, 3, 4), (N, 2, 4, 5)], {}, {}),
        ("matmul_bcast", "matmul", [(N, 3, 4)], {}, {"w": (4, 6)}),
        ("add", "add", [x4, x4], {}, {}),
        ("add_bcast", "add", [x4, (N, 4, 1, 1)], {}, {}),
        ("sub", "sub", [x4], {}, {"c": np.array(1.0, np.float32)}),
        ("mul", "mul", [x4, (N, 4, 1, 1)], {}, {}),
        ("sum", "sum", [x4, x4, x4], {}, {}),
        ("concat", "concat", [x4, (N, 2, 9, 9)], {"axis": 1}, {}),
        ("reshape", "reshape", [(N, 6, 4)], {"shape": (0, 3, -1, 4)}, {}),
        ("transpose", "transpose", [(N, 6, 4)], {"perm": (0, 2, 1)}, {}),
        ("pad", "pad", [x4], {"pads": (0, 1, 0, 2, 0, 2, 1, 0)}, {}),
    ]
