"""The TVM artifact on disk: ``OUT.so`` and its sidecar ``OUT.json``, shared by the builder
(which writes them) and the runner (which checks them before loading anything).

The sidecar names the library's sha256, so a replaced library is refused; the library in
turn carries its own interface (inputs and outputs: names, shapes, dtypes) as a function
``resdsl_interface`` returning the JSON text, so an edited sidecar is refused too: what
``resdsl run`` enforces always comes from the module itself.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

FORMAT = "resdsl-tvm/1"
INTERFACE_FUNCTION = "resdsl_interface"


def interface_text(meta: dict[str, Any]) -> str:
    """The canonical JSON of an artifact's interface, as embedded in the library."""
    return json.dumps({"inputs": meta["inputs"], "outputs": meta["outputs"]}, sort_keys=True)


def sidecar_path(library: str) -> str:
    """``OUT.so`` -> ``OUT.json``."""
    return library[: -len(".so")] + ".json" if library.endswith(".so") else library + ".json"


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
