"""Checking inputs before anything runs them: one definition for the interpreter and every runner."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import ResdslError
from .shapes import fmt


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints and symbolic names such as "N"
    dtype: str = "float32"


def check_feeds(specs: list[TensorSpec], feeds: Mapping[str, np.ndarray], what: str = "the artifact") -> None:
    """Reject inputs of the wrong name, shape or dtype, and inputs that disagree on a symbolic size,
    with one clear error, so that no runtime's own message reaches the user."""
    names = [s.name for s in specs]
    extra = sorted(set(feeds) - set(names))
    if extra:
        raise ResdslError(f"unknown input {', '.join(extra)}; {what} takes {', '.join(names)}")
    sizes: dict[str, dict[str, int]] = {}
    for spec in specs:
        if spec.name not in feeds:
            raise ResdslError(f"missing input {spec.name!r} of shape {fmt(spec.shape)}")
        arr = np.asarray(feeds[spec.name])
        ok = arr.ndim == len(spec.shape) and all(
            not isinstance(want, int) or want == got for want, got in zip(spec.shape, arr.shape)
        )
        if not ok:
            raise ResdslError(f"input {spec.name!r} has shape {arr.shape}, {what} expects {fmt(spec.shape)}")
        if str(arr.dtype) != spec.dtype:
            raise ResdslError(f"input {spec.name!r} has dtype {arr.dtype}, {what} expects {spec.dtype}")
        for want, got in zip(spec.shape, arr.shape):
            if isinstance(want, str):
                sizes.setdefault(want, {})[spec.name] = got
    for symbol, by_input in sizes.items():
        if len(set(by_input.values())) > 1:
            seen = ", ".join(f"{k}: {v}" for k, v in by_input.items())
            raise ResdslError(f"inputs disagree on the batch size {symbol} ({seen})", hint="feed equal batches")
