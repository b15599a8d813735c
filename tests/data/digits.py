"""The digits split (digits.npz) and the one way to turn its pixels into a model input.

Shared by the PyTorch training example and the int8 quantization work, so both feed a
model the same numbers: 8x8 pixels 0..16 scaled to [0, 1], upsampled 2x by repetition
to 16x16, normalised by (y - 0.3) / 0.4 and repeated over 3 channels -> (n, 3, 16, 16).
"""

from __future__ import annotations

import os

import numpy as np

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.npz")
SPLITS = ("train", "calib", "test")


def load(path: str = PATH) -> dict[str, np.ndarray]:
    """The six arrays: ``{train,calib,test}_x`` uint8 (n, 8, 8), ``{train,calib,test}_y`` int64."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def images(x: np.ndarray) -> np.ndarray:
    """uint8 (n, 8, 8) pixels 0..16 -> float32 (n, 3, 16, 16) model input."""
    y = np.repeat(np.repeat(x.astype(np.float32) / 16.0, 2, axis=1), 2, axis=2)
    return np.repeat(((y - 0.3) / 0.4)[:, None], 3, axis=1).astype(np.float32)
