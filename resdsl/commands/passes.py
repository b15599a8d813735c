"""``resdsl passes``: list the passes and what each -O level runs."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("passes", help="list the compiler passes and optimisation levels")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resdsl.passes import LEVELS, PASSES

    width = max(len(n) for n in PASSES)
    for name, info in PASSES.items():
        print(f"{name:<{width}}  {info.doc}")
    print()
    for level, names in LEVELS.items():
        print(f"-O{level}: {', '.join(names)}")
    return 0
