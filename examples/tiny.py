import resdsl
from resdsl import nn


def basic_block(x, channels, stride=1):
    y = nn.relu(
        nn.batch_norm(nn.conv2d(x, channels, 3, stride=stride, padding=1, bias=False, name="conv1"), name="bn1")
    )
    y = nn.batch_norm(nn.conv2d(y, channels, 3, padding=1, bias=False, name="conv2"), name="bn2")
    return nn.relu(y + x)  # shapes may differ: the compiler inserts the projection


@resdsl.model
def tiny(num_classes: int = 10):
    x = nn.input("image", (3, 32, 32))  # batch dimension N is implicit
    x = nn.relu(nn.batch_norm(nn.conv2d(x, 16, 3, padding=1, bias=False, name="conv1"), name="bn1"))
    with nn.scope("layer1.0"):
        x = basic_block(x, 32, stride=2)
    x = nn.linear(nn.flatten(nn.global_avg_pool(x)), num_classes, name="fc")
    return nn.output("logits", x)
