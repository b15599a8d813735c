"""MobileNetV2 and MobileNetV3 with torchvision's architecture and parameter names.

A torchvision checkpoint loads into these models unchanged (``load_weights(strict=True)``).
The inverted residuals add their input only where torchvision does (stride 1, width kept),
so the compiler's shortcut pass inserts nothing.
"""

import resdsl
from resdsl import blocks, nn

# MobileNetV2 (Sandler et al. 2018): expand ratio t, width c, repeats n, first stride s.
V2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

# MobileNetV3 (Howard et al. 2019): kernel, expanded width, out width, SE, activation, stride.
V3_LARGE = (
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
)
V3_SMALL = (
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
)
ACTIVATIONS = {"RE": nn.relu, "HS": nn.hardswish}


@resdsl.model
def mobilenet_v2(num_classes: int = 1000, image_size: int = 224):
    x = nn.input("image", (3, image_size, image_size))
    with nn.scope("features"):
        x = blocks.conv_norm_act(x, 32, 3, stride=2, activation=nn.relu6, name="0")
        index = 1
        for t, c, n, s in V2_SETTINGS:
            for i in range(n):
                with nn.scope(index):
                    x = blocks.inverted_residual(x, c, s if i == 0 else 1, t)
                index += 1
        x = blocks.conv_norm_act(x, 1280, 1, activation=nn.relu6, name=str(index))
    x = nn.flatten(nn.global_avg_pool(x))
    with nn.scope("classifier"):
        x = nn.linear(nn.dropout(x, 0.2), num_classes, name="1")
    return nn.output("logits", x)


def mobilenet_v3(settings, last_channel, num_classes, image_size):
    eps = 0.001  # torchvision's MobileNetV3 batch norms
    x = nn.input("image", (3, image_size, image_size))
    with nn.scope("features"):
        x = blocks.conv_norm_act(x, 16, 3, stride=2, activation=nn.hardswish, eps=eps, name="0")
        for index, (kernel, expanded, out, se, act, stride) in enumerate(settings, start=1):
            with nn.scope(index):
                x = blocks.mbconv(
                    x,
                    out,
                    kernel,
                    stride,
                    expanded,
                    ACTIVATIONS[act],
                    se_channels=blocks.make_divisible(expanded // 4) if se else None,
                    eps=eps,
                )
        x = blocks.conv_norm_act(x, 6 * x.shape[1], 1, activation=nn.hardswish, eps=eps, name=str(len(settings) + 1))
    x = nn.flatten(nn.global_avg_pool(x))
    with nn.scope("classifier"):
        x = nn.hardswish(nn.linear(x, last_channel, name="0"))
        x = nn.linear(nn.dropout(x, 0.2), num_classes, name="3")
    return nn.output("logits", x)


@resdsl.model
def mobilenet_v3_large(num_classes: int = 1000, image_size: int = 224):
    return mobilenet_v3(V3_LARGE, 1280, num_classes, image_size)


@resdsl.model
def mobilenet_v3_small(num_classes: int = 1000, image_size: int = 224):
    return mobilenet_v3(V3_SMALL, 1024, num_classes, image_size)
