"""ImageNet ResNets with torchvision's architecture (ResNet v1.5) and parameter names.

A torchvision checkpoint loads into these models unchanged. The blocks write the
residual add as `y + x`; where the shapes differ, resdsl inserts the projection
shortcut (`downsample.0` conv, `downsample.1` batch norm) exactly where torchvision has one.
"""

import resdsl
from resdsl import nn


def basic(x, planes, stride=1, groups=1, width_per_group=64):
    y = nn.relu(nn.batch_norm(nn.conv2d(x, planes, 3, stride=stride, padding=1, bias=False, name="conv1"), name="bn1"))
    y = nn.batch_norm(nn.conv2d(y, planes, 3, padding=1, bias=False, name="conv2"), name="bn2")
    return nn.relu(y + x)


def bottleneck(x, planes, stride=1, groups=1, width_per_group=64):
    width = int(planes * (width_per_group / 64.0)) * groups
    y = nn.relu(nn.batch_norm(nn.conv2d(x, width, 1, bias=False, name="conv1"), name="bn1"))
    y = nn.conv2d(y, width, 3, stride=stride, padding=1, groups=groups, bias=False, name="conv2")
    y = nn.relu(nn.batch_norm(y, name="bn2"))
    y = nn.batch_norm(nn.conv2d(y, planes * 4, 1, bias=False, name="conv3"), name="bn3")
    return nn.relu(y + x)


def resnet(block, layers, num_classes, image_size, groups=1, width_per_group=64):
    x = nn.input("image", (3, image_size, image_size))
    x = nn.relu(nn.batch_norm(nn.conv2d(x, 64, 7, stride=2, padding=3, bias=False, name="conv1"), name="bn1"))
    x = nn.max_pool2d(x, 3, stride=2, padding=1, name="maxpool")
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for i in range(blocks):
            with nn.scope(f"layer{stage}.{i}"):
                stride = 2 if stage > 1 and i == 0 else 1
                x = block(x, planes, stride, groups, width_per_group)
    x = nn.flatten(nn.global_avg_pool(x), name="flatten")
    return nn.output("logits", nn.linear(x, num_classes, name="fc"))


@resdsl.model
def resnet18(num_classes: int = 1000, image_size: int = 224):
    return resnet(basic, (2, 2, 2, 2), num_classes, image_size)


@resdsl.model
def resnet34(num_classes: int = 1000, image_size: int = 224):
    return resnet(basic, (3, 4, 6, 3), num_classes, image_size)


@resdsl.model
def resnet50(num_classes: int = 1000, image_size: int = 224):
    return resnet(bottleneck, (3, 4, 6, 3), num_classes, image_size)


@resdsl.model
def resnet101(num_classes: int = 1000, image_size: int = 224):
    return resnet(bottleneck, (3, 4, 23, 3), num_classes, image_size)


@resdsl.model
def resnet152(num_classes: int = 1000, image_size: int = 224):
    return resnet(bottleneck, (3, 8, 36, 3), num_classes, image_size)


@resdsl.model
def wide_resnet50_2(num_classes: int = 1000, image_size: int = 224):
    return resnet(bottleneck, (3, 4, 6, 3), num_classes, image_size, width_per_group=128)


@resdsl.model
def resnext50_32x4d(num_classes: int = 1000, image_size: int = 224):
    return resnet(bottleneck, (3, 4, 6, 3), num_classes, image_size, groups=32, width_per_group=4)
