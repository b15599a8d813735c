"""Transformer encoders built from pre-LN residual blocks: x + MHSA(LN(x)), then x + MLP(LN(x)).

``vit`` is a Vision Transformer (Dosovitskiy et al. 2021): a strided convolution
cuts the image into patches, reshape + transpose turn them into tokens, an
optional class token and position embedding are ``nn.parameter``s, and the head
reads the class token (or the mean token). With the defaults below and
``image_size=224, patch=16, dim=192, depth=12, heads=3`` it is ViT-Ti/16
(5,717,416 parameters). ``sequence_encoder`` takes token embeddings (N, T, D).
"""

import numpy as np

import resdsl
from resdsl import blocks, nn


def select_row(x, index, length, name):
    """Token ``index`` of (N, T, D) as (N, 1, D): a one-hot (1, T) matmul, since the IR has no slice op."""
    onehot = np.zeros((1, length), np.float32)
    onehot[0, index] = 1.0
    return nn.matmul(nn.constant(onehot, name=name), x)


@resdsl.model
def vit(
    num_classes: int = 1000,
    image_size: int = 224,
    patch: int = 16,
    dim: int = 192,
    depth: int = 12,
    heads: int = 3,
    mlp_ratio: float = 4.0,
    class_token: bool = True,
    position_embedding: bool = True,
):
    x = nn.input("image", (3, image_size, image_size))
    x = nn.conv2d(x, dim, patch, stride=patch, name="patch_embed.proj")  # (N, D, H/p, W/p)
    grid = image_size // patch
    tokens = grid * grid
    x = nn.transpose(nn.reshape(x, ("N", dim, tokens)), (0, 2, 1))  # (N, T, D)
    if class_token:
        # Broadcast the (1, 1, D) token over the batch: a zero (1, T) matmul gives an (N, 1, D) zero.
        zero = nn.matmul(nn.constant(np.zeros((1, tokens), np.float32), name="batch_zero"), x)
        x = nn.concat([zero + nn.parameter("cls_token", (1, 1, dim), init="normal"), x], axis=1)
        tokens += 1
    if position_embedding:
        x = x + nn.parameter("pos_embed", (1, tokens, dim), init="normal")
    for i in range(depth):
        with nn.scope(f"blocks.{i}"):
            x = blocks.transformer_block(x, heads, mlp_ratio)
    x = nn.layer_norm(x, eps=1e-6, name="norm")
    if class_token:
        x = select_row(x, 0, tokens, "cls_select")
    else:
        x = nn.matmul(nn.constant(np.full((1, tokens), 1.0 / tokens, np.float32), name="token_mean"), x)
    x = nn.reshape(x, ("N", dim))
    return nn.output("logits", nn.linear(x, num_classes, name="head"))


@resdsl.model
def sequence_encoder(
    seq_len: int = 128,
    dim: int = 768,
    depth: int = 12,
    heads: int = 12,
    mlp_ratio: float = 4.0,
    final_norm: bool = True,
):
    """A pre-LN encoder stack over token embeddings (N, T, D); BERT-base widths by default."""
    x = nn.input("tokens", (seq_len, dim))
    for i in range(depth):
        with nn.scope(f"layers.{i}"):
            x = blocks.transformer_block(x, heads, mlp_ratio, eps=1e-12)
    if final_norm:
        x = nn.layer_norm(x, eps=1e-12, name="norm")
    return nn.output("hidden", x)
