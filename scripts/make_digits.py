"""Write tests/data/digits.npz: scikit-learn's bundled 8x8 digits, split once for every test.

Why committed: the digits ship inside scikit-learn (no download), but scikit-learn is not a
dependency of resdsl; the 1797 images take 48 kB as compressed uint8, so the arrays travel with the
tests instead. The PyTorch training example and the int8 quantization work both read this
file, with this exact format:

- keys ``train_x, train_y, calib_x, calib_y, test_x, test_y``;
- ``*_x``: uint8 (n, 8, 8), the raw pixels 0..16; ``*_y``: int64 labels 0..9;
- split by ``np.random.default_rng(0).permutation(1797)``: the first 1297 indices train,
  the next 100 calibrate, the last 400 test.

Run (scikit-learn in a temporary location, not the project's environment)::

    pip install --target /tmp/skl scikit-learn
    PYTHONPATH=/tmp/skl python scripts/make_digits.py
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.datasets import load_digits

OUT = os.path.join(os.path.dirname(__file__), os.pardir, "tests", "data", "digits.npz")
SPLITS = (("train", 0, 1297), ("calib", 1297, 1397), ("test", 1397, 1797))


def main() -> None:
    digits = load_digits()
    x = digits.images  # float64 (1797, 8, 8), whole numbers 0..16
    assert x.shape == (1797, 8, 8) and np.array_equal(x, np.round(x)) and x.min() == 0 and x.max() == 16
    x = x.astype(np.uint8)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(1797)
    arrays = {}
    for name, lo, hi in SPLITS:
        arrays[f"{name}_x"] = x[order[lo:hi]]
        arrays[f"{name}_y"] = y[order[lo:hi]]
    np.savez_compressed(OUT, **arrays)
    print(", ".join(f"{k} {v.shape} {v.dtype}" for k, v in arrays.items()), "->", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
