"""``resdsl run``: run an artifact, optionally checking it against the reference interpreter."""

from __future__ import annotations

import argparse
import os

import numpy as np

from resdsl.errors import ResdslError

from . import model_arguments


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a compiled artifact (.onnx or .so)")
    p.add_argument("artifact", metavar="ARTIFACT")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", help="an input array")
    p.add_argument("--random", action="store_true", help="feed random normal inputs")
    p.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    p.add_argument("--batch", type=int, default=1, help="batch size for --random (default 1)")
    p.add_argument("--check", metavar="MODEL.py", help="compare with the reference interpreter on this model file")
    p.add_argument("--model", help="model name within --check's file")
    p.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model argument for --check (default: those the artifact was compiled with)",
    )
    p.add_argument("--weights", metavar="FILE", help="weights for --check (default: those compiled in)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="force a device (default: CUDA when present)")
    p.add_argument("--save", metavar="DIR", help="write each output as DIR/NAME.npy")
    p.set_defaults(func=run)


def _load_inputs(args, runner) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for text in args.input:
        if "=" not in text:
            raise ResdslError(f"--input {text!r} must look like NAME=FILE.npy")
        name, path = text.split("=", 1)
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ResdslError(f"cannot read input {name!r} from {path!r}: {e}") from None
    if args.random:
        rng = np.random.default_rng(args.seed)
        for spec in runner.inputs:
            if spec.name not in feeds:
                shape = tuple(d if isinstance(d, int) else args.batch for d in spec.shape)
                feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    if not feeds:
        raise ResdslError("no inputs given", hint="pass --random or --input NAME=FILE.npy")
    return feeds


def run(args: argparse.Namespace) -> int:
    from resdsl.backends import open_artifact
    from resdsl.driver import CompileRequest, build_graph
    from resdsl.interpreter import interpret
    from resdsl.numerics import TOLERANCE, compare

    runner = open_artifact(args.artifact, args.device)
    feeds = _load_inputs(args, runner)
    outputs = runner.run(feeds)
    for name, value in outputs.items():
        print(f"output {name}: shape {tuple(value.shape)} dtype {value.dtype}")
    print(f"device: {runner.device}")
    if args.save:
        os.makedirs(args.save, exist_ok=True)
        for name, value in outputs.items():
            np.save(os.path.join(args.save, f"{name}.npy"), value)
    if not args.check:
        return 0
    prov = getattr(runner, "provenance", {}) or {}
    request = CompileRequest(
        path=args.check,
        model=args.model or prov.get("model"),
        arguments=model_arguments(args) if args.arg else dict(prov.get("arguments", {})),
        level=0,  # the meaning of the model: the artifact's optimisations must not change it
        shortcut=prov.get("shortcut"),
        residual_scale=prov.get("residual_scale"),
        weights=args.weights or prov.get("weights"),
    )
    graph, _ = build_graph(request)
    want = interpret(graph, feeds)
    missing = sorted(set(want) - set(outputs))
    if missing:
        raise ResdslError(f"the artifact lacks outputs {', '.join(missing)} of model {graph.name!r}")
    errors = compare(outputs, want)
    worst = max(errors.values())
    for name, err in errors.items():
        print(f"check {name}: max relative error {err:.2e} vs reference interpreter")
    if worst > TOLERANCE:
        print(f"FAILED: max relative error {worst:.2e} exceeds {TOLERANCE:.0e}")
        return 1
    print(f"OK: max relative error {worst:.2e} <= {TOLERANCE:.0e}")
    return 0
