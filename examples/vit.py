"""ViT-B/16 (Dosovitskiy et al. 2021) with torchvision's architecture and parameter names.

torchvision's VisionTransformer: ``conv_proj`` cuts 16x16 patches, a learnt ``class_token``
is prepended, ``encoder.pos_embedding`` added, then ``encoder.layers.encoder_layer_<i>``
blocks whose attention is torch's MultiheadAttention (q, k, v packed in ``in_proj_weight``),
``encoder.ln``, and ``heads.head`` on the class token. (``examples/transformer.py`` has the
timm-named ViT.)
"""

import resdsl
from resdsl import blocks, nn


def vision_transformer(patch, layers, heads, hidden, mlp_dim, num_classes, image_size):
    x = nn.input("image", (3, image_size, image_size))
    cls = nn.parameter("class_token", (1, 1, hidden))
    x = nn.conv2d(x, hidden, patch, stride=patch, name="conv_proj")  # (N, D, H/p, W/p)
    tokens = (image_size // patch) ** 2
    x = x.reshape("N", hidden, tokens).permute(0, 2, 1)  # (N, T, D)
    # class_token.expand(n, -1, -1): a zero row of the batch (x[:, :1] * 0) plus the token.
    x = nn.concat([x[:, :1] * 0.0 + cls, x], axis=1)
    with nn.scope("encoder"):
        x = x + nn.parameter("pos_embedding", (1, tokens + 1, hidden), init="normal")
        for i in range(layers):
            with nn.scope(f"layers.encoder_layer_{i}"):
                x = blocks.vit_encoder_block(x, heads, mlp_dim)
        x = nn.layer_norm(x, eps=1e-6, name="ln")
    x = x[:, 0]  # the class token
    return nn.output("logits", nn.linear(x, num_classes, name="heads.head"))


@resdsl.model
def vit_b_16(num_classes: int = 1000, image_size: int = 224):
    return vision_transformer(16, 12, 12, 768, 3072, num_classes, image_size)
