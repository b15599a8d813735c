"""A highway network (Srivastava et al. 2015): gated shortcuts y = T(x) H(x) + (1 - T(x)) x.

The seed names highway networks as the gated relative of residual networks; with
T fixed at 1/2 a highway layer is a scaled residual block. The gate's offset
(``gate_bias``, -2 by default) starts every layer close to carrying its input.
"""

import resdsl
from resdsl import blocks, nn


@resdsl.model
def highway(in_features: int = 784, width: int = 64, depth: int = 10, num_classes: int = 10, gate_bias: float = -2.0):
    x = nn.input("features", (in_features,))
    x = nn.relu(nn.linear(x, width, name="stem"))
    for i in range(depth):
        with nn.scope(f"layers.{i}"):
            x = blocks.highway(x, gate_bias)
    return nn.output("logits", nn.linear(x, num_classes, name="head"))
