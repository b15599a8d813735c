"""Search the tiles of the zoo's kernels on this CPU and write the tile book resdsl ships.

    .venv/bin/python scripts/build_tophub.py [--models resnet18,resnet50,...] [--out PATH]

Writes ``resdsl/tophub/llvm-<mcpu>.json`` (this machine's LLVM CPU name), which
``resdsl compile --target llvm`` then applies on every machine of that CPU family.
Run it on a quiet machine: each tile is timed in this process, and a busy neighbour
makes the choice noisy (``tiles.search.MIN_GAIN`` guards against recording noise).
Every model is searched at batch 1 and its usual input size; kernels of the same
shape in several models are searched once.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")

# (model file, model, constructor arguments): the zoo's 224x224 ImageNet models, the
# CIFAR ResNets at 32x32, and ViT-Ti/16.
ZOO = {
    "resnet18": ("resnet.py", "resnet18", {}),
    "resnet34": ("resnet.py", "resnet34", {}),
    "resnet50": ("resnet.py", "resnet50", {}),
    "resnet101": ("resnet.py", "resnet101", {}),
    "wide_resnet50_2": ("resnet.py", "wide_resnet50_2", {}),
    "resnext50_32x4d": ("resnet.py", "resnext50_32x4d", {}),
    "preact_resnet50": ("preact_resnet.py", "preact_resnet50", {}),
    "resnet56": ("cifar_resnet.py", "resnet56", {}),
    "vit": ("transformer.py", "vit", {}),
}
DEFAULT = "resnet18,resnet34,resnet50,wide_resnet50_2,resnext50_32x4d,resnet56,vit"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT, help=f"comma-separated, from {', '.join(ZOO)}")
    parser.add_argument("--out", help="book to write (default: the shipped one for this CPU)")
    args = parser.parse_args()

    from resdsl.backends.tvm.target import host_cpu, llvm_target
    from resdsl.backends.tvm.tiles.book import shipped_book_path
    from resdsl.backends.tvm.tiles.search import search_tiles

    from resdsl.driver import CompileRequest, build_graph

    out = args.out or shipped_book_path(host_cpu().mcpu)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    t0 = time.perf_counter()
    searched: set[str] = set()
    for name in args.models.split(","):
        file, model, kwargs = ZOO[name]
        graph, _ = build_graph(CompileRequest(os.path.join(EXAMPLES, file), model, kwargs))
        book, results = search_tiles(
            graph, llvm_target(), out, progress=lambda m: print(m, file=sys.stderr), searched=searched
        )
        before = sum(r.calls * r.default_ms for r in results)
        after = sum(r.calls * (r.best_ms if r.kept else r.default_ms) for r in results)
        print(
            f"{name}: {len(results)} kernels, {sum(r.kept for r in results)} with a better tile; "
            f"kernel time {before:.2f} -> {after:.2f} ms ({time.perf_counter() - t0:.0f} s so far)",
            flush=True,
        )
    print(f"wrote {out}: {len(book.records)} kernels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
