"""ConvNeXt-T (Liu et al. 2022) with torchvision's architecture and parameter names.

A 4x4 stride-4 "patchify" stem, four stages of CNBlocks (7x7 depthwise conv, LayerNorm,
inverted MLP, layer scale, stochastic depth, + x) with LayerNorm2d + 2x2 stride-2 convs
between them. LayerNorm2d is ``nn.layer_norm(x, channels_first=True)``.
"""

import resdsl
from resdsl import blocks, nn

TINY = ((96, 3), (192, 3), (384, 9), (768, 3))  # (width, blocks) per stage


def convnext(stages, num_classes, image_size, stochastic_depth_prob):
    x = nn.input("image", (3, image_size, image_size))
    total = sum(n for _, n in stages)
    block_id = 0
    with nn.scope("features"):
        x = nn.conv2d(x, stages[0][0], 4, stride=4, name="0.0")
        x = nn.layer_norm(x, eps=1e-6, channels_first=True, name="0.1")
        for s, (width, n) in enumerate(stages):
            if s:  # downsampling between stages: features.2, .4, .6
                x = nn.layer_norm(x, eps=1e-6, channels_first=True, name=f"{2 * s}.0")
                x = nn.conv2d(x, width, 2, stride=2, name=f"{2 * s}.1")
            for i in range(n):
                with nn.scope(f"{2 * s + 1}.{i}"):
                    x = blocks.cn_block(x, stochastic_depth_prob * block_id / (total - 1.0))
                block_id += 1
    x = nn.global_avg_pool(x)
    with nn.scope("classifier"):
        x = nn.flatten(nn.layer_norm(x, eps=1e-6, channels_first=True, name="0"))
        x = nn.linear(x, num_classes, name="2")
    return nn.output("logits", x)


@resdsl.model
def convnext_tiny(num_classes: int = 1000, image_size: int = 224):
    return convnext(TINY, num_classes, image_size, stochastic_depth_prob=0.1)
