"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Each block is x + F(x) with F = (BN-ReLU-conv) x 2 or 3 and nothing after the add,
so the identity path runs unbroken from the stem to the final BN-ReLU: the
setting of the seed's signal-propagation argument. ``preact_resnet1001`` is the
paper's 1001-layer CIFAR network (3 stages of 111 bottlenecks, 10.2M parameters).
"""

import resdsl
from resdsl import blocks, nn


def imagenet_preact(block, layers, expansion, num_classes, image_size):
    x = nn.input("image", (3, image_size, image_size))
    x = nn.relu(nn.batch_norm(nn.conv2d(x, 64, 7, stride=2, padding=3, bias=False, name="conv1"), name="bn1"))
    x = nn.max_pool2d(x, 3, stride=2, padding=1, name="maxpool")
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for i in range(count):
            with nn.scope(f"layer{stage}.{i}"):
                stride = 2 if stage > 1 and i == 0 else 1
                # The stem already ends in BN-ReLU: the first block does not repeat it.
                x = block(x, planes, stride, preact=(stage, i) != (1, 0))
    x = nn.relu(nn.batch_norm(x, name="bn_final"))
    x = nn.flatten(nn.global_avg_pool(x), name="flatten")
    return nn.output("logits", nn.linear(x, num_classes, name="fc"))


@resdsl.model
def preact_resnet18(num_classes: int = 1000, image_size: int = 224):
    return imagenet_preact(blocks.preact_basic, (2, 2, 2, 2), 1, num_classes, image_size)


@resdsl.model
def preact_resnet50(num_classes: int = 1000, image_size: int = 224):
    return imagenet_preact(blocks.preact_bottleneck, (3, 4, 6, 3), 4, num_classes, image_size)


@resdsl.model
def preact_resnet1001(num_classes: int = 10, image_size: int = 32, blocks_per_stage: int = 111):
    """CIFAR pre-activation bottleneck ResNet, depth 9 * blocks_per_stage + 2 (111 -> 1001 layers)."""
    x = nn.input("image", (3, image_size, image_size))
    x = nn.conv2d(x, 16, 3, padding=1, bias=False, name="conv1")
    for stage, planes in enumerate((16, 32, 64), start=1):
        for i in range(blocks_per_stage):
            with nn.scope(f"layer{stage}.{i}"):
                x = blocks.preact_bottleneck(x, planes, stride=2 if stage > 1 and i == 0 else 1)
    x = nn.relu(nn.batch_norm(x, name="bn_final"))
    x = nn.flatten(nn.global_avg_pool(x), name="flatten")
    return nn.output("logits", nn.linear(x, num_classes, name="fc"))
