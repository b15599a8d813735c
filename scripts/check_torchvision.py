"""Check the torchvision zoo against torchvision itself: each model's checkpoint loads with
``load_weights(strict=True)`` and the reference interpreter reproduces torchvision's eval logits.

Run by the developer, not by tests (no torchvision needed here, only its outputs): ``--refs DIR``
holds, per model M, ``M.safetensors`` (an eval-mode state_dict), ``M_io.npz`` (inputs ``x`` and
``logits``, and ``x_64``/``logits_64`` for CNNs) and ``M.json`` (``params``, ``num_entries``,
``macs_224``), as /work/tvref's dump_refs.py writes them. The error reported is
max|ours - torchvision| / max|torchvision|, the worst over the model's inputs.

    .venv/bin/python scripts/check_torchvision.py --refs /work/tvref [model ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import resdsl
from resdsl.summary import summarize

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "examples")
MODELS = {
    "mobilenet_v2": "mobilenet.py",
    "mobilenet_v3_large": "mobilenet.py",
    "mobilenet_v3_small": "mobilenet.py",
    "efficientnet_b0": "efficientnet.py",
    "regnet_y_400mf": "regnet.py",
    "convnext_tiny": "convnext.py",
    "vit_b_16": "vit.py",
}
TARGET = 1e-4


def check(name: str, refs: str) -> tuple[float, str]:
    """The worst relative logits error of ``name`` over the reference inputs, and a report line."""
    from safetensors.numpy import load_file

    meta = json.load(open(os.path.join(refs, f"{name}.json")))
    state = {k: v for k, v in load_file(os.path.join(refs, f"{name}.safetensors")).items()}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    io = np.load(os.path.join(refs, f"{name}_io.npz"))
    worst, parts = 0.0, []
    for suffix, size in (("", 224), ("_64", 64)):
        if f"x{suffix}" not in io.files:
            continue
        graph = resdsl.load(os.path.join(EXAMPLES, MODELS[name]), name, image_size=size)
        if size == 224:
            counts = (graph.num_parameters(), summarize(graph).macs)
        graph.load_weights(state, strict=True)
        start = time.perf_counter()
        (ours,) = resdsl.interpret(graph, {"image": io[f"x{suffix}"]}).values()
        want = io[f"logits{suffix}"]
        err = float(np.abs(ours - want).max() / np.abs(want).max())
        worst = max(worst, err)
        parts.append(f"{size}px {err:.2e} ({time.perf_counter() - start:.1f}s)")
    params, macs = counts
    line = (
        f"{name:20s} params {params:,} (tv {meta['params']:,}) MACs {macs / 1e9:.3f}G (tv {meta['macs_224'] / 1e9:.3f}G) "
        f"logits rel err {' '.join(parts)} {'ok' if worst < TARGET else 'FAIL'}"
    )
    return worst, line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refs", required=True, help="directory of <model>.safetensors, <model>_io.npz, <model>.json")
    ap.add_argument("models", nargs="*", default=list(MODELS), help=f"default: all ({', '.join(MODELS)})")
    args = ap.parse_args(argv)
    failed = 0
    for name in args.models:
        if name not in MODELS:
            ap.error(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        worst, line = check(name, args.refs)
        print(line, flush=True)
        failed += worst >= TARGET
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
