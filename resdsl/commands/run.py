"""``resdsl run``: run an artifact, optionally checking it against the reference interpreter.

Output names come from the artifact and are data, not paths: ``--save`` writes each as
``DIR/<safe name>.npy`` by the rule of ``safe_filename``. ``--check`` compares under the NaN
rule of ``resdsl.numerics`` and says when an input or the reference itself is not finite.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re

import numpy as np

from resdsl.errors import ResdslError

from . import model_arguments, nonnegative_int, output_dir, positive_int

MAX_STEM = 200  # bytes of a saved file's stem: names beyond it are cut and given a hash suffix
_UNSAFE = re.compile(rb"[^A-Za-z0-9._-]")


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a compiled artifact (.onnx or .so)")
    p.add_argument("artifact", metavar="ARTIFACT")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", help="an input array")
    p.add_argument("--random", action="store_true", help="feed random normal inputs")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed for --random (default 0)")
    p.add_argument("--batch", type=positive_int, default=1, help="batch size for --random (default 1)")
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
    p.add_argument("--save", type=output_dir, metavar="DIR", help="write each output as DIR/NAME.npy (names escaped)")
    p.add_argument("--force", action="store_true", help="run even when the model looks too big for the memory")
    p.set_defaults(func=run)


def safe_filename(name: str) -> str:
    """The file name (without ``.npy``) an output named ``name`` is saved under.

    Every byte of the UTF-8 name outside ``[A-Za-z0-9._-]`` becomes ``%XX`` (``%`` itself
    included, so distinct names stay distinct and no ``/``, NUL or other separator remains);
    an empty name, ``.`` and ``..`` are refused; a stem longer than 200 bytes is cut to 183
    and given ``-`` and 16 hex digits of the name's SHA-256."""
    if name in ("", ".", ".."):
        raise ResdslError(f"output name {name!r} cannot be saved as a file", hint="rename the output in the model")
    raw = name.encode("utf-8", "surrogatepass")
    stem = _UNSAFE.sub(lambda m: b"%%%02X" % m.group()[0], raw).decode("ascii")
    if len(stem) > MAX_STEM:
        stem = stem[: MAX_STEM - 17] + "-" + hashlib.sha256(raw).hexdigest()[:16]
    return stem


def save_outputs(outputs: dict[str, np.ndarray], directory: str) -> list[tuple[str, str]]:
    """Write each output inside ``directory`` only; returns (name, path) pairs. Names that would
    map to the same file (case-insensitively, as some file systems compare) are refused first."""
    from resdsl.atomic import atomic_path

    files: dict[str, str] = {}
    for name in outputs:
        fname = safe_filename(name) + ".npy"
        clash = files.get(fname.casefold())
        if clash is not None:
            raise ResdslError(f"outputs {clash!r} and {name!r} would both be saved as {fname}", hint="drop --save")
        files[fname.casefold()] = name
    os.makedirs(directory, exist_ok=True)
    root = os.path.realpath(directory)
    written = []
    for name, value in outputs.items():
        path = os.path.join(root, safe_filename(name) + ".npy")
        if os.path.dirname(path) != root:  # cannot happen by the rule above; never write outside DIR
            raise AssertionError(f"output {name!r} escaped {root}")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, value)
        written.append((name, path))
    return written


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
                if np.issubdtype(np.dtype(spec.dtype), np.integer):  # indices: below the table size
                    high = (getattr(runner, "index_bounds", None) or {}).get(spec.name, 2)
                    feeds[spec.name] = rng.integers(0, high, shape).astype(spec.dtype)
                else:
                    feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    if not feeds:
        raise ResdslError("no inputs given", hint="pass --random or --input NAME=FILE.npy")
    return feeds


def _feed_batch(runner, feeds: dict[str, np.ndarray], default: int) -> int:
    """The batch the feeds carry: the size of a symbolic dimension, else ``default``."""
    for spec in runner.inputs:
        value = feeds.get(spec.name)
        if value is not None and np.ndim(value) == len(spec.shape):
            for want, got in zip(spec.shape, np.shape(value)):
                if isinstance(want, str):
                    return int(got)
    return default


def _reference_graph(args, prov: dict, dtype: str | None = None):
    """The model the artifact was compiled from, at -O0: for ``--check``, and for the memory guard
    when the recorded model file is still the one compiled (same SHA-256); else None.
    ``dtype`` overrides the artifact's (float32: the full-precision model, for the report)."""
    from resdsl.driver import CompileRequest, build_graph

    path = args.check
    if path is None:
        path = prov.get("model_file")
        if not path or not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != prov.get("model_sha256"):
                return None
    quantized = prov.get("quantized") if args.check else None
    pipeline = quantized["pipeline"] if quantized else {}
    request = CompileRequest(
        path=path,
        model=args.model or prov.get("model"),
        arguments=model_arguments(args) if args.arg else dict(prov.get("arguments", {})),
        # the meaning of the model: the artifact's optimisations must not change it (an int8
        # artifact means its QDQ graph, whose ranges name the nodes of the pipeline calibrated)
        level=pipeline.get("level", 0),
        passes=pipeline.get("passes"),
        shortcut=prov.get("shortcut"),
        residual_scale=prov.get("residual_scale"),
        weights=(args.weights or prov.get("weights")) if args.check else None,
        dtype=dtype or prov.get("dtype", "float32"),
        keep_float32=prov.get("keep_float32", "default"),
    )
    graph, _ = build_graph(request)
    if quantized:
        from resdsl.quant import apply_qparams

        graph = apply_qparams(graph, quantized, "the artifact's qparams")
    return graph


def run(args: argparse.Namespace) -> int:
    from resdsl.backends import open_artifact
    from resdsl.resources import guard

    runner = open_artifact(args.artifact, args.device)
    feeds = _load_inputs(args, runner)
    prov = getattr(runner, "provenance", {}) or {}
    graph = _reference_graph(args, prov)
    if graph is not None:
        guard(graph, _feed_batch(runner, feeds, args.batch), args.force)
    outputs = runner.run(feeds)
    for name, value in outputs.items():
        print(f"output {name}: shape {tuple(value.shape)} dtype {value.dtype}")
    print(f"device: {runner.device}")
    if args.save:
        for name, path in save_outputs(outputs, args.save):
            print(f"saved {name} to {path}")
    if not args.check:
        return 0
    dtype = prov.get("dtype", "float32")
    if dtype != "float32":
        _against_float32(_reference_graph(args, prov, "float32"), feeds, outputs)
    return _check(graph, feeds, outputs, dtype)


def _against_float32(graph, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
    """A reduced-precision artifact against the float32 model: reported, never a failure."""
    from resdsl.interpreter import interpret
    from resdsl.numerics import compare

    for name, result in compare(outputs, interpret(graph, feeds)).items():
        print(f"against float32 {name}: max relative error {result.error:.2e} (reported, not checked)")


def _check(graph, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray], dtype: str = "float32") -> int:
    """Compare with the interpreter in the artifact's dtype; 1 when any output differs by more than
    that dtype's tolerance (``resdsl.ops.cast.TOLERANCES``), under the NaN rule of resdsl.numerics."""
    from resdsl.interpreter import interpret
    from resdsl.numerics import compare, describe_nonfinite
    from resdsl.ops.cast import TOLERANCES

    tol = TOLERANCES[dtype]
    if dtype != "float32":
        print(f"checking against the reference interpreter in {dtype} (tolerance {tol:.0e})")
    if "quantized" in graph.meta.get("provenance", {}):
        return _check_quantized(graph, feeds, outputs)
    want = interpret(graph, feeds)
    missing = sorted(set(want) - set(outputs))
    if missing:
        raise ResdslError(f"the artifact lacks outputs {', '.join(missing)} of model {graph.name!r}")
    bad_inputs = {k: d for k, v in feeds.items() if (d := describe_nonfinite(v))}
    cause = "; ".join(f"the input {k} holds {d}" for k, d in bad_inputs.items()) or "the inputs are finite"
    results = compare(outputs, want)
    for name, result in results.items():
        ref = describe_nonfinite(want[name])
        if ref:
            print(f"check {name}: the reference output has {ref}: {cause}")
        if result.problem:
            print(f"check {name}: {result.problem}")
        else:
            agree = f" (and {result.nonfinite_agree} non-finite values agree)" if result.nonfinite_agree else ""
            print(f"check {name}: max relative error {result.error:.2e} vs reference interpreter{agree}")
    failed = [name for name, r in results.items() if not r.ok(tol)]
    worst = max(r.error for r in results.values())
    if failed:
        what = f"output {failed[0]} differs" if len(failed) == 1 else f"outputs {', '.join(failed)} differ"
        figure = f"max relative error {worst:.2e} exceeds {tol:.0e}" if np.isfinite(worst) else "see above"
        print(f"FAILED: {what} from the reference interpreter ({figure})")
        return 1
    print(f"OK: max relative error {worst:.2e} <= {tol:.0e}")
    return 0


# How far an int8 runtime may be from the int8 interpreter, in steps of the output's grid. A
# runtime requantizes each layer with its own float roundings (ONNX Runtime and TVM multiply the
# int32 accumulator by s_x s_w / s_y; the interpreter divides the float conv by s_y): where a value
# lies within a float32 rounding of a half step, the two round to neighbouring grid points, and
# the layers after it carry that one step on. On resnet50 (random weights, 4 seeds x 2 images)
# ONNX Runtime and TVM alike, with rounded logits: ~72% equal to the interpreter's, 99.9% within
# one step, none beyond two, mean 0.28 steps; with the logits unrounded (the default) the mean
# error is ~0.3 steps. A wrong scale, layout or zero point moves most values by many steps.
MEAN_STEPS = 0.5  # the mean error, in steps
MAX_STEPS = 3.0  # and none further than this


def _check_quantized(graph, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> int:
    """An int8 artifact against the int8 (QDQ) interpreter, in quantization steps of each output
    (``quant.output_step``: the grid it has, or would have had if rounded): a mean error of at most
    ``MEAN_STEPS``, none beyond ``MAX_STEPS`` (why: the comment above)."""
    from resdsl.interpreter import interpret
    from resdsl.quant import output_step

    want = interpret(graph, feeds)
    failed = []
    for name, _ in graph.outputs:
        step = output_step(graph, name)
        diff = np.abs(np.asarray(outputs[name], np.float64) - want[name]).ravel()
        if not diff.size:
            continue
        steps = diff / step if step else np.where(diff > 0, np.inf, 0.0)
        slack = 1e-3  # two values on the grid differ by whole steps, up to float rounding
        mean = float(np.mean(steps))
        print(
            f"check {name}: max abs error {diff.max():.3e} = {steps.max():.2f} quantization steps vs the int8 "
            f"interpreter, mean {mean:.2f} steps"
        )
        if not (mean <= MEAN_STEPS and steps.max() <= MAX_STEPS + slack):
            failed.append(name)
    if failed:
        print(
            f"FAILED: {', '.join(failed)} differ from the int8 interpreter by more than rounding "
            f"(need a mean error of at most {MEAN_STEPS} quantization steps, none beyond {MAX_STEPS:.0f})"
        )
        return 1
    print(
        f"OK: the int8 reference interpreter's values up to requantization rounding "
        f"(mean error at most {MEAN_STEPS} quantization steps, none beyond {MAX_STEPS:.0f})"
    )
    return 0
