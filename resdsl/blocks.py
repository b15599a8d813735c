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
from collections.abc import Callable

from . import nn
from .errors import ResdslError, caller_loc
from .nn import Tensor


def _conv_bn(x: Tensor, channels: int, kernel: int, stride: int = 1, groups: int = 1, index: int = 1) -> Tensor:
    """conv{index} (no bias, "same" padding) then bn{index}: the unit of a ResNet v1 branch."""
    y = nn.conv2d(
        x, channels, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False, name=f"conv{index}"
    )
    return nn.batch_norm(y, name=f"bn{index}")


Activation = Callable[[Tensor], Tensor]


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding (_make_divisible): the nearest multiple of ``divisor``,
    at least ``divisor``, and never more than 10% below ``value`` (MobileNet, EfficientNet, RegNet)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def squeeze_excite(x: Tensor, reduction: int = 16, name: str = "se") -> Tensor:
    """Squeeze-and-excitation (Hu et al. 2018): x * sigmoid(fc2(relu(fc1(avgpool(x))))).

    ``fc1``/``fc2`` are 1x1 convolutions with bias, as torchvision's SqueezeExcitation.
    """
    return squeeze_excitation(x, max(1, x.shape[1] // reduction), name=name)


def squeeze_excitation(
    x: Tensor,
    squeeze_channels: int,
    activation: Activation = nn.relu,
    gate: Activation = nn.sigmoid,
    name: str = "se",
) -> Tensor:
    """torchvision.ops.SqueezeExcitation: x * gate(fc2(activation(fc1(avgpool(x))))).

    The squeeze width is given, not a ratio, because each family rounds it its own way
    (MobileNetV3 to a multiple of 8, EfficientNet from the block input, RegNet from the
    stage input); MobileNetV3 gates with hardsigmoid, EfficientNet squeezes with SiLU.
    """
    with nn.scope(name):
        s = nn.global_avg_pool(x)
        s = activation(nn.conv2d(s, squeeze_channels, 1, name="fc1"))
        s = gate(nn.conv2d(s, x.shape[1], 1, name="fc2"))
    return x * s


def conv_norm_act(
    x: Tensor,
    out_channels: int,
    kernel: int = 3,
    stride: int = 1,
    groups: int = 1,
    activation: Activation | None = nn.relu,
    eps: float = 1e-5,
    name: str = "0",
) -> Tensor:
    """torchvision.ops.Conv2dNormActivation: ``<name>.0`` conv (no bias, "same" padding), ``<name>.1`` batch norm,
    then the activation (None for the linear projections of inverted residuals)."""
    with nn.scope(name):
        y = nn.conv2d(
            x, out_channels, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=False, name="0"
        )
        y = nn.batch_norm(y, eps=eps, name="1")
    return activation(y) if activation is not None else y


def inverted_residual(x: Tensor, out_channels: int, stride: int = 1, expand_ratio: int = 6) -> Tensor:
    """MobileNetV2's inverted residual (Sandler et al. 2018): 1x1 expand, 3x3 depthwise, linear 1x1 project.

    Names follow torchvision (``conv.0.0`` expand conv, ..., the project conv and its batch norm last);
    the add is there only where torchvision has one (stride 1, same width): no projection shortcut.
    """
    cin = x.shape[1]
    hidden = int(round(cin * expand_ratio))
    with nn.scope("conv"):
        y, i = x, 0
        if expand_ratio != 1:
            y, i = conv_norm_act(y, hidden, 1, activation=nn.relu6, name="0"), 1
        y = conv_norm_act(y, hidden, 3, stride, groups=hidden, activation=nn.relu6, name=str(i))
        y = nn.batch_norm(nn.conv2d(y, out_channels, 1, bias=False, name=str(i + 1)), name=str(i + 2))
    return y + x if stride == 1 and cin == out_channels else y


def mbconv(
    x: Tensor,
    out_channels: int,
    kernel: int,
    stride: int,
    expanded: int,
    activation: Activation,
    se_channels: int | None = None,
    se_activation: Activation = nn.relu,
    se_gate: Activation = nn.hardsigmoid,
    eps: float = 1e-5,
    stochastic_depth: float | None = None,
) -> Tensor:
    """The inverted residual with squeeze-excitation of MobileNetV3 and EfficientNet ("MBConv").

    ``block.0`` expand (absent when ``expanded`` is the input width), depthwise, optional SE, linear
    project. ``stochastic_depth`` (EfficientNet) is the drop rate recorded on the residual branch;
    identity shortcut only where stride is 1 and the width is kept, as torchvision.
    """
    cin = x.shape[1]
    with nn.scope("block"):
        y, i = x, 0
        if expanded != cin:
            y, i = conv_norm_act(y, expanded, 1, activation=activation, eps=eps, name="0"), 1
        y = conv_norm_act(y, expanded, kernel, stride, groups=expanded, activation=activation, eps=eps, name=str(i))
        if se_channels:
            i += 1
            y = squeeze_excitation(y, se_channels, se_activation, se_gate, name=str(i))
        y = conv_norm_act(y, out_channels, 1, activation=None, eps=eps, name=str(i + 1))
    if stride != 1 or cin != out_channels:
        return y
    if stochastic_depth is not None:
        y = nn.stochastic_depth(y, stochastic_depth)
    return y + x


def regnet_y_block(
    x: Tensor, width_out: int, stride: int, group_width: int, se_ratio: float = 0.25, bottleneck_multiplier: float = 1.0
) -> Tensor:
    """RegNetY's residual bottleneck (Radosavovic et al. 2020): ``f.a`` 1x1, ``f.b`` grouped 3x3 (stride),
    ``f.se`` squeeze-excitation sized from the block input, ``f.c`` linear 1x1; relu(f(x) + shortcut).

    torchvision names the shortcut's conv + BN ``proj.0/1`` (not ``downsample``), so the block
    writes it itself; the shortcuts pass then sees matching shapes and inserts nothing.
    """
    w_in = x.shape[1]
    w_b = int(round(width_out * bottleneck_multiplier))
    shortcut = x
    if w_in != width_out or stride != 1:
        shortcut = conv_norm_act(x, width_out, 1, stride, activation=None, name="proj")
    with nn.scope("f"):
        y = conv_norm_act(x, w_b, 1, name="a")
        y = conv_norm_act(y, w_b, 3, stride, groups=w_b // group_width, name="b")
        y = squeeze_excitation(y, int(round(se_ratio * w_in)), name="se")
        y = conv_norm_act(y, width_out, 1, activation=None, name="c")
    return nn.relu(y + shortcut)


def cn_block(x: Tensor, stochastic_depth: float = 0.0, layer_scale: float = 1e-6, eps: float = 1e-6) -> Tensor:
    """ConvNeXt's block (Liu et al. 2022), as torchvision's CNBlock: 7x7 depthwise conv, channels-last
    LayerNorm, Linear 4x, GELU, Linear back, times a learnt per-channel ``layer_scale`` (C, 1, 1), + x."""
    c = x.shape[1]
    scale = nn.parameter("layer_scale", (c, 1, 1), init=layer_scale)
    with nn.scope("block"):
        y = nn.conv2d(x, c, 7, padding=3, groups=c, name="0")
        y = nn.layer_norm(y.permute(0, 2, 3, 1), eps=eps, name="2")
        y = nn.linear(nn.gelu(nn.linear(y, 4 * c, name="3")), c, name="5")
        y = y.permute(0, 3, 1, 2)
    return nn.stochastic_depth(scale * y, stochastic_depth) + x


def _head_widths(x: Tensor, heads: int) -> tuple[int, int, int]:
    """(tokens, model width, head width) of an (N, T, D) input split into ``heads``."""
    _, t, d_model = x.shape
    if d_model % heads:
        raise ResdslError(
            f"attention: width {d_model} does not divide by heads={heads}",
            caller_loc(),
            "choose a head count that divides the model width",
        )
    return t, d_model, d_model // heads


def packed_attention(x: Tensor, heads: int, name: str = "self_attention") -> Tensor:
    """torch.nn.MultiheadAttention's self-attention on (N, T, D) with its parameters: q, k and v packed
    in one ``in_proj_weight`` (3D, D) and ``in_proj_bias`` (3D,), then ``out_proj``.

    One (N, T, 3D) product, split into q, k, v by slicing, heads by reshape + transpose as in
    ``multi_head_attention``.
    """
    t, d_model, d = _head_widths(x, heads)
    with nn.scope(name):
        w = nn.parameter("in_proj_weight", (3 * d_model, d_model), init="normal")
        b = nn.parameter("in_proj_bias", (3 * d_model,))
        qkv = nn.matmul(x, nn.transpose(w, (1, 0))) + b
        q, k, v = (qkv[..., i * d_model : (i + 1) * d_model].reshape("N", t, heads, d) for i in range(3))
        scores = (q.permute(0, 2, 1, 3) @ k.permute(0, 2, 3, 1)) * (1.0 / math.sqrt(d))
        out = nn.softmax(scores, axis=-1) @ v.permute(0, 2, 1, 3)
        out = out.permute(0, 2, 1, 3).reshape("N", t, d_model)
        return nn.linear(out, d_model, name="out_proj")


def vit_encoder_block(x: Tensor, heads: int, mlp_dim: int, eps: float = 1e-6) -> Tensor:
    """torchvision's ViT EncoderBlock: x + MHA(ln_1(x)), then x + mlp(ln_2(x)) (``mlp.0`` GELU ``mlp.3``)."""
    x = packed_attention(nn.layer_norm(x, eps=eps, name="ln_1"), heads) + x
    y = nn.layer_norm(x, eps=eps, name="ln_2")
    with nn.scope("mlp"):
        y = nn.linear(nn.gelu(nn.linear(y, mlp_dim, name="0")), x.shape[-1], name="3")
    return y + x


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
    t, d_model, d = _head_widths(x, heads)
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
