"""Reading an ONNX file: the checks that turn a bad file into one clear error before any op is converted.

A truncated or corrupt file, an external-data reference whose file is missing, an opset outside
13-20, and an input whose spatial size is dynamic are each the user's problem, reported as one
``ResdslError`` naming the file, instead of a protobuf or onnx traceback deep in conversion.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import ResdslError, SourceLoc

OPSETS = range(13, 21)


@dataclass(frozen=True)
class OnnxLoc(SourceLoc):
    """A node of an ONNX file: its index in the graph (as ``line``), name and op type.

    It is a SourceLoc so every error path that names a model line names the ONNX node instead;
    it has no source line to quote, so errors stay one line."""

    node: str = ""
    op_type: str = ""

    def __str__(self) -> str:
        return f"{self.file}: node {self.line} {self.node!r} ({self.op_type})"

    def source_line(self) -> str:
        return ""


def load(path: str):
    """The ModelProto of ``path`` with external data loaded, checked as described above."""
    import onnx
    from google.protobuf.message import DecodeError

    if not os.path.isfile(path):
        raise ResdslError(f"ONNX file {path!r} does not exist", hint="give the path to a .onnx file")
    try:
        model = onnx.load(path, load_external_data=False)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ResdslError(
            f"{path} is not a readable ONNX model (truncated or corrupt: {str(e).splitlines()[0][:120]})",
            hint="re-export the model or copy the file again",
        ) from None
    if not model.graph.node and not model.graph.output:
        raise ResdslError(f"{path} is not a readable ONNX model (truncated or corrupt: it holds no graph)")
    _check_external(model, path)
    try:
        onnx.external_data_helper.load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
    except (OSError, ValueError) as e:
        raise ResdslError(f"{path}: cannot read its external weight data: {e}") from None
    _check_opset(model, path)
    return model


def _check_external(model, path: str) -> None:
    from onnx.external_data_helper import uses_external_data

    base = os.path.dirname(os.path.abspath(path))
    for tensor in model.graph.initializer:
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not location or not os.path.isfile(os.path.join(base, location)):
            raise ResdslError(
                f"{path}: initializer {tensor.name!r} refers to external data {location!r}, "
                f"which is missing next to the model",
                hint="copy the .data file beside the .onnx file, or re-export with the weights embedded",
            )


def _check_opset(model, path: str) -> None:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise ResdslError(f"{path} declares no default-domain opset")
    if versions[0] not in OPSETS:
        raise ResdslError(
            f"{path} uses opset {versions[0]}; resdsl imports opsets {OPSETS.start}-{OPSETS.stop - 1}",
            hint="convert it with onnx.version_converter.convert_version(model, 17)",
        )


def input_shape(value_info, path: str) -> tuple:
    """The static shape of a graph input, the first dimension symbolic where it is dynamic."""
    from ..shapes import BATCH

    dims = value_info.type.tensor_type.shape.dim
    shape: list = []
    for i, d in enumerate(dims):
        if d.HasField("dim_value") and d.dim_value > 0:
            shape.append(int(d.dim_value))
        elif i == 0:
            shape.append(BATCH)
        else:
            what = d.dim_param or "unknown"
            raise ResdslError(
                f"{path}: input {value_info.name!r} has a dynamic size {what!r} in dimension {i}; "
                "resdsl compiles static shapes, with only the batch (dimension 0) dynamic",
                hint="re-export with a fixed input size (dynamic_axes / dynamic_shapes on the batch only)",
            )
    if not shape:
        raise ResdslError(f"{path}: input {value_info.name!r} has no shape")
    return tuple(shape)
