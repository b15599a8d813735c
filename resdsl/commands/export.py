"""``resdsl export FORMAT ...``: turn an artifact into what another system deploys.

The first positional names the format and every format parses the rest of the line
itself, so ``resdsl export triton ARTIFACT --repo DIR`` (a Triton model repository
entry) can live beside a later ``resdsl export MODEL.py --target ...`` that dispatches
on a model file instead: a new exporter is one more entry in ``EXPORTERS``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from resdsl.errors import ResdslError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line through the CLI's ResdslError path, exit 2
        raise ResdslError(message, hint=f"see '{self.prog} --help'")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export an artifact for deployment (triton: a Triton Inference Server model repository)",
        description="resdsl export triton ARTIFACT --repo DIR [options]; see 'resdsl export triton --help'",
    )
    p.add_argument("format", metavar="FORMAT", help=f"what to export to: {', '.join(EXPORTERS)}")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the format's own arguments")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    exporter = EXPORTERS.get(args.format)
    if exporter is None:
        raise ResdslError(f"unknown export format {args.format!r}", hint=f"choose one of {', '.join(EXPORTERS)}")
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


EXPORTERS: dict[str, Callable[[list[str]], int]] = {"triton": export_triton}
