"""What each target needs beyond the graph: one frozen record per target, built once.

Why per target: a catch-all record mixed llvm fields (mcpu, Winograd, tile books) with
cuda ones (arch), so every backend had to ignore most of it and ``--db`` was read by
suffix in three places. Here ``--db`` is parsed once (``TuningDb``) into what it is,
and a record only has the fields its target reads. Records are frozen: emitting never
changes its caller's options. ``resdsl.backends.make_options`` builds them (and says
which flag does not fit which target); this module imports nothing heavy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from resdsl.errors import ResdslError


@dataclass(frozen=True)
class TuningDb:
    """``--db``: a tile book (a ``.json`` file, llvm only) or a MetaSchedule database (a directory)."""

    path: str
    kind: Literal["tiles", "metaschedule"]

    @classmethod
    def parse(cls, path: str) -> TuningDb:
        tiles = path.endswith(".json") and not os.path.isdir(path)
        return cls(path, "tiles" if tiles else "metaschedule")


def _check_batch(batch: int | None) -> None:
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ResdslError(f"--batch must be a positive integer, got {batch!r}")


@dataclass(frozen=True)
class OnnxOptions:
    """``onnx`` (standard ops) or ``onnx-ort`` (ONNX Runtime's contrib ops)."""

    target: Literal["onnx", "onnx-ort"] = "onnx"
    provenance: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LlvmOptions:
    """The TVM CPU target."""

    target: ClassVar[str] = "llvm"
    mcpu: str | None = None  # LLVM CPU name to build for; default: this machine's
    winograd: bool = True  # 3x3 stride-1 convs as Winograd F(m, 3) where it pays
    tophub: bool = True  # apply the tile book resdsl ships for the target CPU
    tiles: str | None = None  # a tile book (.json) to apply (``--db``)
    db: str | None = None  # a MetaSchedule database directory to apply (``--db``)
    batch: int | None = None  # fix the symbolic batch dimension
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_batch(self.batch)

    @property
    def db_path(self) -> str | None:
        """The ``--db`` this was built with, whichever kind it was (the sidecar records it)."""
        return self.tiles or self.db


@dataclass(frozen=True)
class CudaOptions:
    """The TVM CUDA target."""

    target: ClassVar[str] = "cuda"
    arch: str = "sm_90"
    db: str | None = None  # a MetaSchedule database directory to apply (``--db``)
    batch: int | None = None  # fix the symbolic batch dimension
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_batch(self.batch)

    @property
    def db_path(self) -> str | None:
        return self.db


EmitOptions = OnnxOptions | LlvmOptions | CudaOptions
