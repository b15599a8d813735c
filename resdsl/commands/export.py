"""``resdsl export FORMAT ...``: turn an artifact into what another system deploys.

The first positional names the format and every format parses the rest of the line
itself, so ``resdsl export triton ARTIFACT --repo DIR`` (a Triton model repository
entry) lives beside ``resdsl export MODEL.py --target torch -o model_torch.py``, which
dispatches on a model file instead: a new exporter is one more entry in ``EXPORTERS``
(or, for a model file, in ``MODEL_TARGETS``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from resdsl.errors import ResdslError

from . import add_model_args, compile_request, output_file


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line through the CLI's ResdslError path, exit 2
        raise ResdslError(message, hint=f"see '{self.prog} --help'")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export an artifact for deployment (triton) or a model file to PyTorch (MODEL.py --target torch)",
        description="resdsl export triton ARTIFACT --repo DIR [options], or resdsl export MODEL.py --target torch "
        "-o model_torch.py [options]; see 'resdsl export triton --help' and 'resdsl export MODEL.py --help'",
    )
    p.add_argument(
        "format", metavar="FORMAT|MODEL.py", help=f"what to export to ({', '.join(EXPORTERS)}), or a model file"
    )
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the format's own arguments")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    exporter = EXPORTERS.get(args.format)
    if exporter is None and (args.format.endswith(".py") or os.path.isfile(args.format)):
        return export_model([args.format, *args.rest])
    if exporter is None:
        raise ResdslError(
            f"unknown export format {args.format!r}",
            hint=f"choose one of {', '.join(EXPORTERS)}, or give a model file (MODEL.py --target torch)",
        )
    return exporter(args.rest)


def _positive_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of sizes") from None


def triton_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="resdsl export triton",
        description="Write DIR/NAME/config.pbtxt and the next version directory DIR/NAME/N for Triton.",
    )
    p.add_argument("artifact", metavar="ARTIFACT", help="a .onnx file, or a TVM .so with its .json sidecar")
    p.add_argument("--repo", required=True, metavar="DIR", help="the model repository (created if missing)")
    p.add_argument("--name", help="model name (default: the artifact's file name without extension)")
    p.add_argument("--max-batch", type=int, default=32, help="max_batch_size (default 32; 0: no batching)")
    p.add_argument("--instances", type=int, default=1, help="model instances (default 1)")
    p.add_argument("--kind", choices=("cpu", "gpu", "auto"), help="instance kind (default: the artifact's device)")
    p.add_argument("--backend", choices=("onnxruntime", "python"), help="default: onnxruntime for ONNX, python for TVM")
    p.add_argument("--preferred-batch", type=_positive_list, default=[], metavar="4,8", help="preferred batch sizes")
    p.add_argument("--queue-delay-us", type=int, default=500, help="dynamic batcher's max queue delay (default 500)")
    p.add_argument(
        "--dynamic-batching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let Triton merge requests into batches (default on)",
    )
    p.add_argument("--version", type=int, help="version number (default: the next one)")
    return p


def export_triton(argv: list[str]) -> int:
    from resdsl.serving.triton_repo import TritonExport, export

    a = triton_parser().parse_args(argv)
    written = export(
        TritonExport(
            artifact=a.artifact,
            repo=a.repo,
            name=a.name,
            max_batch=a.max_batch,
            instances=a.instances,
            kind=a.kind,
            backend=a.backend,
            preferred_batch=a.preferred_batch,
            queue_delay_us=a.queue_delay_us,
            dynamic_batching=a.dynamic_batching,
            version=a.version,
        )
    )
    batching = f"max_batch_size {written.max_batch_size}" if written.max_batch_size else "no batching (fixed batch)"
    print(f"wrote {written.directory}/{written.version} and {written.directory}/config.pbtxt ({batching})")
    return 0


def model_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="resdsl export MODEL.py",
        description="Write the model's canonical graph as one standalone file for another framework "
        "(torch: an nn.Module whose state_dict names are resdsl's parameter names).",
    )
    add_model_args(p)
    p.add_argument("--target", required=True, choices=tuple(MODEL_TARGETS), help="the framework (torch)")
    p.add_argument("-o", "--output", required=True, type=output_file, metavar="OUT.py", help="the file to write")
    p.add_argument("--shortcut", choices=("A", "B", "C"), help="shortcut option (default: the model's, else B)")
    p.add_argument(
        "--residual-scale", metavar="inv-depth|ALPHA", help="scale residuals as compile does (off by default)"
    )
    return p


def export_model(argv: list[str]) -> int:
    a = model_parser().parse_args(argv)
    a.level, a.passes = 0, None
    return MODEL_TARGETS[a.target](a)


def export_torch(a: argparse.Namespace) -> int:
    from resdsl.torch_export import export

    written = export(compile_request(a), a.output)
    print(f"wrote {written.path}: class {written.class_name} ({written.parameters:,} parameters), needs only torch")
    return 0


EXPORTERS: dict[str, Callable[[list[str]], int]] = {"triton": export_triton}
MODEL_TARGETS: dict[str, Callable[[argparse.Namespace], int]] = {"torch": export_torch}
