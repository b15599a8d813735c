"""CIFAR-10 ResNets (He et al. 2015, section 4.2): 6n+2 layers, 3 stages of 16/32/64 channels.

The paper's shortcuts are option A: a strided identity with zero-padded channels,
no parameters, so the counts match the published ones (ResNet-20: 0.27M,
ResNet-56: 0.85M, ResNet-110: 1.7M). The model chooses it with
``@resdsl.model(shortcut="A")``; ``resdsl compile --shortcut B`` overrides it.
"""

import resdsl
from resdsl import blocks, nn


def cifar_resnet(depth, num_classes, image_size):
    if (depth - 2) % 6:
        raise resdsl.ResdslError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    x = nn.input("image", (3, image_size, image_size))
    x = nn.relu(nn.batch_norm(nn.conv2d(x, 16, 3, padding=1, bias=False, name="conv1"), name="bn1"))
    for stage, planes in enumerate((16, 32, 64), start=1):
        for i in range(n):
            with nn.scope(f"layer{stage}.{i}"):
                x = blocks.basic(x, planes, stride=2 if stage > 1 and i == 0 else 1)
    x = nn.flatten(nn.global_avg_pool(x), name="flatten")
    return nn.output("logits", nn.linear(x, num_classes, name="fc"))


@resdsl.model(shortcut="A")
def resnet20(num_classes: int = 10, image_size: int = 32):
    return cifar_resnet(20, num_classes, image_size)


@resdsl.model(shortcut="A")
def resnet32(num_classes: int = 10, image_size: int = 32):
    return cifar_resnet(32, num_classes, image_size)


@resdsl.model(shortcut="A")
def resnet44(num_classes: int = 10, image_size: int = 32):
    return cifar_resnet(44, num_classes, image_size)


@resdsl.model(shortcut="A")
def resnet56(num_classes: int = 10, image_size: int = 32):
    return cifar_resnet(56, num_classes, image_size)


@resdsl.model(shortcut="A")
def resnet110(num_classes: int = 10, image_size: int = 32):
    return cifar_resnet(110, num_classes, image_size)
