"""The residual block library, written in the public DSL so it doubles as examples.

Every block takes the block input ``x`` and returns its output; the caller opens
the block's scope (``with nn.scope("layer1.0"):``), so parameter names follow
torchvision (``layer1.0.conv1.weight``, ``layer1.0.bn1.running_mean``).

The residual add is always written ``y + x``. Where the shapes differ, blocks do
not build a downsample path themselves: the compiler's shortcuts pass inserts it
(option B: ``<scope>.downsample.0/1`` for NCHW, ``<scope>.proj`` for dense), so
one block serves option A, B and C alike.
"""

from __future__ import annotations

import math

from . import nn
from .errors import ResdslError, caller_loc
from .nn import Tensor


def _conv_bn(x: Tensor, channels: int, kernel: int, stride: int = 1, groups: int = 1, index: int = 1) -> Tensor:
    """conv{index} (no bias, "same" padding) then bn{index}: the unit of a ResNet v1 branch."""
    y = nn.conv2d(
        x, channels, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False, name=f"conv{index}"
    )
    return nn.batch_norm(y, name=f"bn{index}")


def squeeze_excite(x: Tensor, reduction: int = 16, name: str = "se") -> Tensor:
    """Squeeze-and-excitation (Hu et al. 2018): x * sigmoid(fc2(relu(fc1(avgpool(x))))).

    ``fc1``/``fc2`` are 1x1 convolutions with bias, as torchvision's SqueezeExcitation.
    """
    channels = x.shape[1]
    with nn.scope(name):
        s = nn.global_avg_pool(x)
        s = nn.relu(nn.conv2d(s, max(1, channels // reduction), 1, name="fc1"))
        s = nn.sigmoid(nn.conv2d(s, channels, 1, name="fc2"))
    return x * s


def basic(x: Tensor, planes: int, stride: int = 1, se_reduction: int | None = None) -> Tensor:
    """ResNet basic block: two 3x3 convolutions, relu(F(x) + x)."""
    y = nn.relu(_conv_bn(x, planes, 3, stride, index=1))
    y = _conv_bn(y, planes, 3, index=2)
    if se_reduction:
        y = squeeze_excite(y, se_reduction)
    return nn.relu(y + x)


def bottleneck(
    x: Tensor,
    planes: int,
    stride: int = 1,
    groups: int = 1,
    width_per_group: int = 64,
    expansion: int = 4,
    se_reduction: int | None = None,
) -> Tensor:
    """ResNet bottleneck (1x1, 3x3, 1x1) with the stride on the 3x3, as torchvision ("ResNet v1.5").

    ``groups`` and ``width_per_group`` give ResNeXt and wide ResNets with torchvision's width rule.
    """
    width = int(planes * (width_per_group / 64.0)) * groups
    y = nn.relu(_conv_bn(x, width, 1, index=1))
    y = nn.relu(_conv_bn(y, width, 3, stride, groups=groups, index=2))
    y = _conv_bn(y, planes * expansion, 1, index=3)
    if se_reduction:
        y = squeeze_excite(y, se_reduction)
    return nn.relu(y + x)


def resnext(x: Tensor, planes: int, stride: int = 1, groups: int = 32, width_per_group: int = 4) -> Tensor:
    """ResNeXt block (Xie et al. 2017): a bottleneck whose 3x3 is grouped ("32x4d" by default)."""
    return bottleneck(x, planes, stride, groups=groups, width_per_group=width_per_group)


def wide(x: Tensor, planes: int, stride: int = 1, multiplier: int = 2) -> Tensor:
    """Wide bottleneck (Zagoruyko & Komodakis 2016, torchvision's wide_resnet*_2): the 3x3 is ``multiplier`` x wider."""
    return bottleneck(x, planes, stride, width_per_group=64 * multiplier)


def _needs_projection(x: Tensor, out_channels: int, stride: int) -> bool:
    return stride != 1 or x.shape[1] != out_channels


def preact_basic(x: Tensor, planes: int, stride: int = 1, preact: bool = True) -> Tensor:
    """Pre-activation basic block (He et al. 2016, "ResNet v2"): x + conv(relu(bn(conv(relu(bn(x)))))).

    Nothing follows the add, so the identity path is clean from block to block. Where a
    projection is needed it reads the pre-activated input, as the paper's code does.
    ``preact=False`` skips the first BN-ReLU (the network's first block, after the stem's).
    """
    a = nn.relu(nn.batch_norm(x, name="bn1")) if preact else x
    y = nn.conv2d(a, planes, 3, stride=stride, padding=1, bias=False, name="conv1")
    y = nn.relu(nn.batch_norm(y, name="bn2"))
    y = nn.conv2d(y, planes, 3, padding=1, bias=False, name="conv2")
    shortcut = a if _needs_projection(x, planes, stride) else x
    return y + shortcut


def preact_bottleneck(x: Tensor, planes: int, stride: int = 1, expansion: int = 4, preact: bool = True) -> Tensor:
    """Pre-activation bottleneck: BN-ReLU-conv1x1, BN-ReLU-conv3x3 (stride), BN-ReLU-conv1x1, then + x."""
    a = nn.relu(nn.batch_norm(x, name="bn1")) if preact else x
    y = nn.conv2d(a, planes, 1, bias=False, name="conv1")
    y = nn.relu(nn.batch_norm(y, name="bn2"))
    y = nn.conv2d(y, planes, 3, stride=stride, padding=1, bias=False, name="conv2")
    y = nn.relu(nn.batch_norm(y, name="bn3"))
    y = nn.conv2d(y, planes * expansion, 1, bias=False, name="conv3")
    shortcut = a if _needs_projection(x, planes * expansion, stride) else x
    return y + shortcut


def multi_head_attention(x: Tensor, heads: int, name: str = "attn") -> Tensor:
    """Multi-head self-attention on (N, T, D) from registry ops only.

    softmax(Q K^T / sqrt(d)) V per head, heads split by reshape + transpose:
    (N, T, D) -> (N, T, H, d) -> (N, H, T, d); K is laid out (N, H, d, T) so one
    matmul gives the (N, H, T, T) scores.
    """
    _, t, d_model = x.shape
    if d_model % heads:
        raise ResdslError(
            f"attention: width {d_model} does not divide by heads={heads}",
            caller_loc(),
            "choose a head count that divides the model width",
        )
    d = d_model // heads
    with nn.scope(name):
        q = nn.transpose(nn.reshape(nn.linear(x, d_model, name="q"), ("N", t, heads, d)), (0, 2, 1, 3))
        k = nn.transpose(nn.reshape(nn.linear(x, d_model, name="k"), ("N", t, heads, d)), (0, 2, 3, 1))
        v = nn.transpose(nn.reshape(nn.linear(x, d_model, name="v"), ("N", t, heads, d)), (0, 2, 1, 3))
        scores = nn.matmul(q, k) * (1.0 / math.sqrt(d))
        out = nn.matmul(nn.softmax(scores, axis=-1), v)
        out = nn.reshape(nn.transpose(out, (0, 2, 1, 3)), ("N", t, d_model))
        return nn.linear(out, d_model, name="proj")


def mlp(x: Tensor, hidden: int, out: int | None = None, name: str = "mlp") -> Tensor:
    """fc1 -> GELU -> fc2, the Transformer's position-wise feed-forward network."""
    with nn.scope(name):
        y = nn.gelu(nn.linear(x, hidden, name="fc1"))
        return nn.linear(y, out or x.shape[-1], name="fc2")


def transformer_block(x: Tensor, heads: int, mlp_ratio: float = 4.0, eps: float = 1e-6) -> Tensor:
    """Pre-LN Transformer block: x + MHSA(LN(x)), then x + MLP(LN(x)).

    Names follow timm's ViT: norm1, attn.{q,k,v,proj}, norm2, mlp.fc1, mlp.fc2.
    """
    x = multi_head_attention(nn.layer_norm(x, eps=eps, name="norm1"), heads) + x
    hidden = int(x.shape[-1] * mlp_ratio)
    return mlp(nn.layer_norm(x, eps=eps, name="norm2"), hidden) + x


def residual_mlp(x: Tensor, features: int, hidden: int | None = None, eps: float = 1e-5) -> Tensor:
    """Pre-LN residual MLP block: x + fc2(gelu(fc1(LN(x)))), on the last axis.

    When ``features`` differs from the input width the compiler projects the
    shortcut with a bias-free linear ``<scope>.proj``.
    """
    y = nn.layer_norm(x, eps=eps, name="norm")
    y = nn.gelu(nn.linear(y, hidden or 4 * features, name="fc1"))
    y = nn.linear(y, features, name="fc2")
    return y + x


def highway(x: Tensor, gate_bias: float = -2.0) -> Tensor:
    """Highway layer (Srivastava et al. 2015): y = T(x) * H(x) + (1 - T(x)) * x.

    H = relu(linear), T = sigmoid(linear + gate_bias): the negative offset makes the
    layer start close to the carry path, as the paper's bias initialisation does.
    """
    d = x.shape[-1]
    h = nn.relu(nn.linear(x, d, name="plain"))
    t = nn.sigmoid(nn.linear(x, d, name="gate") + gate_bias)
    return t * h + (1.0 - t) * x
