"""A residual MLP for vectors (N, features): pre-LN blocks x + fc2(gelu(fc1(LN(x)))).

The widths change between stages; the first block of a wider stage writes the same
``y + x``, and the compiler projects its shortcut with a bias-free linear
``stages.<s>.0.proj`` (the seed's projection connection P(x) = Mx).
"""

import resdsl
from resdsl import blocks, nn


@resdsl.model
def residual_mlp(
    in_features: int = 64,
    widths: tuple = (128, 256, 256),
    blocks_per_stage: int = 2,
    expansion: int = 2,
    num_classes: int = 10,
):
    x = nn.input("features", (in_features,))
    x = nn.linear(x, widths[0], name="stem")
    for s, width in enumerate(widths):
        for i in range(blocks_per_stage):
            with nn.scope(f"stages.{s}.{i}"):
                x = blocks.residual_mlp(x, width, hidden=expansion * width)
    x = nn.layer_norm(x, name="norm")
    return nn.output("logits", nn.linear(x, num_classes, name="head"))
