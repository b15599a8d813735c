"""The TVM artifact on disk: ``OUT.so`` and its sidecar ``OUT.json``, shared by the builder
(which writes them) and the runner (which checks them before loading anything)."""

from __future__ import annotations

import hashlib

FORMAT = "resdsl-tvm/1"


def sidecar_path(library: str) -> str:
    """``OUT.so`` -> ``OUT.json``."""
    return library[: -len(".so")] + ".json" if library.endswith(".so") else library + ".json"


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
