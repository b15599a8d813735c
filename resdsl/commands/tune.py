"""``resdsl tune``: MetaSchedule-tune a model's kernels into a database that ``compile --db`` reuses."""

from __future__ import annotations

import argparse

from resdsl.errors import ResdslError

from . import add_model_args, add_pass_args, compile_request


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="tune a model's TVM kernels with MetaSchedule into a reusable database")
    add_model_args(p)
    add_pass_args(p)
    p.add_argument("--target", default="llvm", help="llvm (cpu) or cuda (default llvm)")
    p.add_argument("--arch", default="sm_90", help="CUDA architecture for --target cuda (default sm_90)")
    p.add_argument(
        "--trials", type=int, required=True, metavar="N", help="measured candidates in all, over all kernels"
    )
    p.add_argument("--db", default="resdsl-tune", metavar="DIR", help="database directory (default resdsl-tune)")
    p.add_argument("--batch", type=int, default=1, help="batch size to tune for (default 1); compile with the same")
    p.add_argument("--weights", metavar="FILE", help="load parameters from .safetensors, .npz or .pt")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resdsl.backends import EmitOptions, resolve_target
    from resdsl.backends.tvm_build import target_dict
    from resdsl.backends.tvm_schedule import llvm_target
    from resdsl.backends.tvm_tune import tune
    from resdsl.driver import build_graph

    target = resolve_target(args.target)
    if target.name not in ("llvm", "cuda"):
        raise ResdslError(f"only TVM targets can be tuned, not {target.name!r}", hint="use --target llvm or cuda")
    if args.batch < 1:
        raise ResdslError(f"--batch must be a positive integer, got {args.batch}")
    req = compile_request(args, verify=True)
    graph, _ = build_graph(req)
    tdict = llvm_target() if target.name == "llvm" else target_dict(EmitOptions(target="cuda", arch=args.arch))
    report = tune(graph, tdict, args.trials, args.db, batch=args.batch)
    print(report.table())
    print(
        f"tuned {len(report.tasks)} kernels in {report.seconds:.0f} s; "
        f"apply with: resdsl compile {args.model_file} --target {target.name} --batch {args.batch} --db {args.db}"
    )
    return 0
