"""RegNetY-400MF (Radosavovic et al. 2020) with torchvision's architecture and parameter names.

The stage widths and depths come from RegNet's linear rule (w_0, w_a, w_m quantised to
multiples of 8), computed here as torchvision computes them; each stage is
``trunk_output.block<s>.block<s>-<i>``, each block a Y bottleneck with squeeze-excitation.
"""

import math

import resdsl
from resdsl import blocks, nn


def stage_params(depth, w_0, w_a, w_m, group_width, bottleneck_multiplier=1.0, quant=8):
    """(width, depth, group width) of each stage: torchvision's BlockParams.from_init_params."""
    widths = []
    for i in range(depth):
        capacity = round(math.log((i * w_a + w_0) / w_0) / math.log(w_m))
        widths.append(int(round(w_0 * w_m**capacity / quant) * quant))
    stages = []
    for w in widths:
        if stages and stages[-1][0] == w:
            stages[-1][1] += 1
        else:
            stages.append([w, 1])
    out = []
    for w, d in stages:  # make the bottleneck width a multiple of the (clipped) group width
        w_bot = int(w * bottleneck_multiplier)
        g = min(group_width, w_bot)
        out.append((int(blocks.make_divisible(w_bot, g) / bottleneck_multiplier), d, g))
    return out


def regnet(stages, num_classes, image_size, se_ratio=0.25):
    x = nn.input("image", (3, image_size, image_size))
    x = blocks.conv_norm_act(x, 32, 3, stride=2, name="stem")
    with nn.scope("trunk_output"):
        for s, (width, depth, group_width) in enumerate(stages, start=1):
            for i in range(depth):
                with nn.scope(f"block{s}.block{s}-{i}"):
                    x = blocks.regnet_y_block(x, width, 2 if i == 0 else 1, group_width, se_ratio)
    x = nn.flatten(nn.global_avg_pool(x))
    return nn.output("logits", nn.linear(x, num_classes, name="fc"))


@resdsl.model
def regnet_y_400mf(num_classes: int = 1000, image_size: int = 224):
    return regnet(stage_params(16, 48, 27.89, 2.09, 8), num_classes, image_size)
