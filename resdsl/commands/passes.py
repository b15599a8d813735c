"""``resdsl passes``: list the passes with their options, their rules, and what each -O level runs."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("passes", help="list the compiler passes, their options and the optimisation levels")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resdsl.passes import LEVELS, PASSES

    width = max(len(n) for n in PASSES)
    for name, info in PASSES.items():
        print(f"{name:<{width}}  {info.doc}")
        for f in info.options():
            flag = f" (--{f.metadata['flag'].replace('_', '-')})" if f.metadata.get("flag") else ""
            print(f"{'':<{width}}    {name}{{{f.name}={f.default}}}  {f.metadata.get('help', '')}{flag}")
        for rule in info.cls.rules:
            ops = rule.op if isinstance(rule.op, str) else "|".join(rule.op)
            print(f"{'':<{width}}    rule {rule.name} on {ops} ({rule.defined_at}); compile --explain {rule.name}")
    print()
    for level, names in LEVELS.items():
        print(f"-O{level}: {', '.join(names)}")
    print()
    print("--passes takes a pipeline text such as 'shortcuts{mode=A},dce,fold_batchnorm'")
    return 0
