"""EfficientNet-B0 (Tan & Le 2019) with torchvision's architecture and parameter names.

MBConv blocks: expand, depthwise, squeeze-excitation (SiLU squeeze, sigmoid gate, sized
from the block input), linear project; stochastic depth on the residual branch grows
linearly to 0.2 over the 16 blocks, as torchvision records it (identity at inference).
"""

import resdsl
from resdsl import blocks, nn

# expand ratio, kernel, first stride, out width, repeats (width and depth multipliers 1.0)
B0 = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


def efficientnet(settings, num_classes, image_size, stochastic_depth_prob=0.2, dropout=0.2):
    x = nn.input("image", (3, image_size, image_size))
    total = sum(s[-1] for s in settings)
    block_id = 0
    with nn.scope("features"):
        x = blocks.conv_norm_act(x, 32, 3, stride=2, activation=nn.silu, name="0")
        for stage, (expand, kernel, stride, out, repeats) in enumerate(settings, start=1):
            for i in range(repeats):
                with nn.scope(f"{stage}.{i}"):
                    cin = x.shape[1]
                    x = blocks.mbconv(
                        x,
                        out,
                        kernel,
                        stride if i == 0 else 1,
                        blocks.make_divisible(cin * expand),
                        nn.silu,
                        se_channels=max(1, cin // 4),
                        se_activation=nn.silu,
                        se_gate=nn.sigmoid,
                        stochastic_depth=stochastic_depth_prob * block_id / total,
                    )
                block_id += 1
        x = blocks.conv_norm_act(x, 4 * x.shape[1], 1, activation=nn.silu, name=str(len(settings) + 1))
    x = nn.flatten(nn.global_avg_pool(x))
    with nn.scope("classifier"):
        x = nn.linear(nn.dropout(x, dropout), num_classes, name="1")
    return nn.output("logits", x)


@resdsl.model
def efficientnet_b0(num_classes: int = 1000, image_size: int = 224):
    return efficientnet(B0, num_classes, image_size)
