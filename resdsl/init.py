"""Initialisers: deterministic parameter values keyed by the parameter's name.

They live in the core, not the DSL, because the compiler creates parameters too
(the shortcut pass's projections): both must draw the same values for the same
name, so a projection inserted by a pass equals one the user wrote by hand.
Keying the generator by name means inserting a layer never changes another's values.
"""

from __future__ import annotations

import math
import zlib

import numpy as np


def param_rng(seed: int, pname: str) -> np.random.Generator:
    """A generator keyed by the model's seed and the parameter's name."""
    return np.random.default_rng([seed, zlib.crc32(pname.encode())])


def he_normal(seed: int, pname: str, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """He (Kaiming) normal: std sqrt(2 / fan_in), what torchvision's ResNets use for convolutions."""
    return param_rng(seed, pname).normal(0.0, math.sqrt(2.0 / fan_in), size=shape).astype(np.float32)


def uniform_fan_in(seed: int, pname: str, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for biases."""
    bound = 1.0 / math.sqrt(fan_in)
    return param_rng(seed, pname).uniform(-bound, bound, size=shape).astype(np.float32)


def normal(seed: int, pname: str, shape: tuple[int, ...], std: float) -> np.ndarray:
    """N(0, std): embeddings and tokens (ViT uses 0.02)."""
    return param_rng(seed, pname).normal(0, std, size=shape).astype(np.float32)
