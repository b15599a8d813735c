"""Weight files: load a checkpoint into a graph by parameter name, and export a graph's weights.

Parameter names follow PyTorch's state_dict (``layer1.0.conv1.weight``,
``layer1.0.downsample.0.weight``), so a torchvision checkpoint loads unchanged.
The matching itself is ``Graph.load_weights``: it reports every missing,
unexpected and mis-shaped key in one error. This module registers with the IR
how files are read and which keys are PyTorch bookkeeping (``num_batches_tracked``,
a batch norm's update counter), so the IR itself knows neither.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from .atomic import atomic_path
from .errors import ResdslError
from .ir import CheckpointConvention, Graph, register_checkpoint_convention

FORMATS = (".safetensors", ".npz", ".pt", ".pth")
# PyTorch state_dict entries that hold no value for inference: a batch norm's update counter.
BOOKKEEPING_SUFFIXES = ("num_batches_tracked",)


def is_bookkeeping(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in BOOKKEEPING_SUFFIXES


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def read_weights_file(path: str) -> dict[str, np.ndarray]:
    """Read a .safetensors, .npz or PyTorch .pt/.pth state_dict as name -> float32 array, checked
    by ``check_weights`` (so a checkpoint is what it claims: floats, and finite)."""
    return check_weights(_read(path), path)


def check_weights(state: dict[str, np.ndarray], path: str) -> dict[str, np.ndarray]:
    """float32 as is; other float dtypes (float16, float64, bfloat16) converted, with one warning
    line on stderr; integers, bools and anything else refused, as are NaN and inf, naming the
    parameter. ``num_batches_tracked`` (an integer counter every BatchNorm keeps) is passed through:
    loading ignores it."""
    out: dict[str, np.ndarray] = {}
    converted: dict[str, int] = {}
    for key, value in state.items():
        value = np.asarray(value)
        if key.endswith("num_batches_tracked"):
            out[key] = value
            continue
        dtype = value.dtype
        if dtype != np.float32:
            if not _is_float(dtype):
                raise ResdslError(
                    f"{path}: parameter {key!r} has dtype {dtype}, not a float",
                    hint="weights must be floating point (float32); is this the right checkpoint?",
                )
            converted[str(dtype)] = converted.get(str(dtype), 0) + 1
            with np.errstate(over="ignore"):
                value = value.astype(np.float32)
        if not np.isfinite(value).all():
            bad = int((~np.isfinite(value)).sum())
            raise ResdslError(
                f"{path}: parameter {key!r} holds {bad} NaN or inf value{'s' if bad != 1 else ''}"
                + (f" (in float32; it was {dtype})" if dtype != np.float32 else ""),
                hint="a diverged or corrupt checkpoint: use an earlier one",
            )
        out[key] = value
    if converted:
        what = ", ".join(f"{n} {name}" for name, n in sorted(converted.items()))
        total = sum(converted.values())
        sys.stderr.write(f"resdsl: warning: {path}: converted {total} parameters to float32 ({what})\n")
    return out


def _is_float(dtype: np.dtype) -> bool:
    """numpy's floats, and ml_dtypes' bfloat16 and float8 kinds (which numpy does not class as floating)."""
    return np.issubdtype(dtype, np.floating) or dtype.name.startswith(("bfloat16", "float8"))


def _read(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise ResdslError(f"weights file {path!r} does not exist")
    ext = _suffix(path)
    try:
        if ext == ".safetensors":
            from safetensors.numpy import load_file

            return dict(load_file(path))
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        if ext in (".pt", ".pth"):
            return _read_torch(path)
    except ResdslError:
        raise
    except Exception as e:  # a corrupt or foreign file: say which and why, without a library traceback
        raise ResdslError(f"cannot read weights file {path!r}: {type(e).__name__}: {e}") from None
    raise ResdslError(
        f"unknown weights format {ext or '(none)'!r} for {path!r}", hint=f"use one of {', '.join(FORMATS)}"
    )


def _read_torch(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ResdslError(
            f"reading {path!r} needs PyTorch, which is not installed",
            hint="pip install torch, or convert the checkpoint to .safetensors",
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # training checkpoints often wrap the weights
    if not isinstance(state, dict):
        raise ResdslError(f"{path!r} holds a {type(state).__name__}, not a state_dict")
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if not hasattr(value, "detach"):
            raise ResdslError(f"{path!r}: entry {key!r} is a {type(value).__name__}, not a tensor")
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:  # numpy has none: ml_dtypes' (onnx depends on it), bit for bit
            import ml_dtypes

            out[key] = value.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        else:
            out[key] = value.numpy()
    return out


def load_weights_file(graph: Graph, path: str, strict: bool = True) -> list[str]:
    """Replace ``graph``'s parameters by those in ``path``; returns the keys left missing (strict=False)."""
    return graph.load_weights(read_weights_file(path), strict=strict)


def export_weights(graph: Graph, path: str) -> str:
    """Write ``graph.state_dict()`` to .safetensors or .npz atomically; returns the path."""
    ext = _suffix(path)
    state: dict[str, Any] = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in graph.state_dict().items()}
    with atomic_path(path) as tmp:
        if ext == ".safetensors":
            from safetensors.numpy import save_file

            save_file(state, tmp, metadata={"format": "pt", "model": graph.name})
        elif ext == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, **state)
        else:
            raise ResdslError(f"cannot export weights as {ext or '(none)'!r}", hint="write .safetensors or .npz")
    return path


register_checkpoint_convention(CheckpointConvention(read=read_weights_file, is_bookkeeping=is_bookkeeping))
