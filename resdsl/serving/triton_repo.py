"""Write a Triton Inference Server model repository entry from a resdsl artifact.

Triton loads ``REPO/NAME/config.pbtxt`` and numeric version directories beside it.
Getting that config right by hand is error-prone (names, dims without the batch
dimension, ``max_batch_size``), and Triton has no TVM backend at all, so this module
derives the config from the artifact itself and, for the Python backend, ships
``python_model.py`` which runs the artifact through ``resdsl.backends.open_artifact``.
Everything Triton would refuse at load time is refused here with one line instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

from resdsl.errors import ResdslError
from resdsl.feeds import TensorSpec

# numpy dtype name -> Triton data type (model_config.proto DataType)
TRITON_DTYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
}
BACKENDS = ("onnxruntime", "python")
KINDS = ("cpu", "gpu", "auto")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python_model.py")


@dataclass
class TritonExport:
    """What ``resdsl export triton`` was asked for; ``None`` means: derive it from the artifact."""

    artifact: str
    repo: str
    name: str | None = None
    max_batch: int = 32
    instances: int = 1
    kind: str | None = None  # cpu, gpu, auto (Triton picks); default: the artifact's device
    backend: str | None = None  # onnxruntime (default for ONNX) or python (the only one for TVM)
    preferred_batch: list[int] = field(default_factory=list)
    queue_delay_us: int = 500
    dynamic_batching: bool = True
    version: int | None = None


@dataclass(frozen=True)
class ArtifactInfo:
    """How an artifact describes itself: its tensors, the device it needs, where it came from."""

    path: str
    format: str  # "onnx" or "tvm"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    device: str | None  # "cpu" or "cuda" for a TVM module; None: an ONNX file runs on either
    target: str
    resdsl_version: str
    provenance: dict[str, Any]
    files: dict[str, str]  # file in the version directory -> source path


@dataclass(frozen=True)
class Written:
    name: str
    version: int
    directory: str  # REPO/NAME
    config: str  # the config.pbtxt text
    max_batch_size: int


def describe(path: str) -> ArtifactInfo:
    """Read an artifact's inputs, outputs and provenance without running it."""
    if not os.path.exists(path):
        raise ResdslError(f"artifact {path!r} does not exist", hint="compile one with 'resdsl compile'")
    if path.endswith(".onnx"):
        return _describe_onnx(path)
    if path.endswith(".so"):
        return _describe_tvm(path)
    raise ResdslError(f"cannot export {path!r}: unknown artifact type", hint="expected a .onnx or .so file")


def _describe_onnx(path: str) -> ArtifactInfo:
    import onnx

    from resdsl.backends import open_artifact

    runner = open_artifact(path, "cpu")
    model = onnx.load(path, load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    return ArtifactInfo(
        path=path,
        format="onnx",
        inputs=list(runner.inputs),
        outputs=list(runner.outputs),
        device=None,
        target=meta.get("resdsl.flavour", "onnx"),
        resdsl_version=model.producer_version if model.producer_name == "resdsl" else "",
        provenance=dict(getattr(runner, "provenance", {}) or {}),
        files={"model.onnx": path},
    )


def _describe_tvm(path: str) -> ArtifactInfo:
    """A TVM module is described by its sidecar, checked against the library as 'resdsl run' checks it
    (``read_sidecar``: present, readable, the library's sha256): that needs no TVM, so a CUDA module
    can be exported on a build machine without a GPU."""
    from resdsl.backends.tvm.artifact import sidecar_path
    from resdsl.backends.tvm.runner import read_sidecar

    meta = read_sidecar(path)
    try:
        specs = {
            key: [TensorSpec(e["name"], tuple(e["shape"]), e.get("dtype", "float32")) for e in meta[key]]
            for key in ("inputs", "outputs")
        }
    except (KeyError, TypeError) as e:
        raise ResdslError(
            f"sidecar {sidecar_path(path)} is unreadable: {e}", hint="recompile with 'resdsl compile'"
        ) from None
    device = meta["device"]
    return ArtifactInfo(
        path=path,
        format="tvm",
        inputs=specs["inputs"],
        outputs=specs["outputs"],
        device=device,
        target="cuda" if device == "cuda" else "llvm",
        resdsl_version=str(meta.get("resdsl_version", "")),
        provenance=dict(meta.get("provenance") or {}),
        files={"artifact.so": path, "artifact.json": sidecar_path(path)},  # not model.so: Python imports it as model.py
    )


def export(req: TritonExport) -> Written:
    """Write ``REPO/NAME/config.pbtxt`` and the next version directory (atomically: a polling server
    sees either no new version or a complete one)."""
    info = describe(req.artifact)
    name = req.name or os.path.splitext(os.path.basename(req.artifact))[0]
    check_name(name)
    backend = _backend(req, info)
    text, max_batch_size = render_config(req, info, name, backend)
    model_dir = os.path.join(req.repo, name)
    os.makedirs(req.repo, exist_ok=True)
    config_path = os.path.join(model_dir, "config.pbtxt")
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as f:
            old = f.read()
        if _interface(old) != _interface(text):
            raise ResdslError(
                f"{model_dir} already serves a model with other inputs, outputs, batching or backend",
                hint="export under another --name, or remove the old versions first",
            )
    version = req.version if req.version is not None else _next_version(model_dir)
    if version < 1:
        raise ResdslError(f"--version {version}: Triton versions are numbered from 1")
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise ResdslError(
            f"{final} already exists: a running server would keep serving the old files",
            hint="omit --version to write the next one",
        )
    staging = tempfile.mkdtemp(prefix=f".{name}.", dir=req.repo)  # not numeric: Triton ignores it
    try:
        version_dir = os.path.join(staging, str(version))
        os.makedirs(version_dir)
        for dest, src in info.files.items():
            shutil.copyfile(src, os.path.join(version_dir, dest))
        if backend == "python":
            shutil.copyfile(TEMPLATE, os.path.join(version_dir, "model.py"))
        if not os.path.isdir(model_dir):  # a new model appears whole: config and first version at once
            with open(os.path.join(staging, "config.pbtxt"), "w", encoding="utf-8") as f:
                f.write(text)
            os.rename(staging, model_dir)
        else:
            os.rename(version_dir, final)
            tmp_config = os.path.join(staging, "config.pbtxt")
            with open(tmp_config, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp_config, config_path)  # same interface; provenance of the newest version
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    os.chmod(model_dir, 0o755)
    return Written(name, version, model_dir, text, max_batch_size)


def check_name(name: str) -> None:
    if "/" in name or "\\" in name or ".." in name or not _NAME.match(name):
        raise ResdslError(
            f"model name {name!r} is not a plain directory name",
            hint="use letters, digits, '_', '-' and '.', with no path separator or '..'",
        )


def _backend(req: TritonExport, info: ArtifactInfo) -> str:
    backend = req.backend or ("python" if info.format == "tvm" else "onnxruntime")
    if backend not in BACKENDS:
        raise ResdslError(f"unknown backend {backend!r}", hint=f"choose one of {', '.join(BACKENDS)}")
    if info.format == "tvm" and backend != "python":
        raise ResdslError(
            f"{info.path} is a TVM module: Triton has no TVM backend", hint="use --backend python (the default)"
        )
    return backend


def _next_version(model_dir: str) -> int:
    if not os.path.isdir(model_dir):
        return 1
    versions = [int(d) for d in os.listdir(model_dir) if d.isdigit() and os.path.isdir(os.path.join(model_dir, d))]
    return max(versions, default=0) + 1


def _kind(req: TritonExport, info: ArtifactInfo) -> str | None:
    """Triton's instance kind; None leaves it to Triton (KIND_AUTO: a GPU where one is present)."""
    built = {"cuda": "gpu", "cpu": "cpu"}.get(info.device or "", "auto")
    kind = req.kind or built
    if kind not in KINDS:
        raise ResdslError(f"unknown instance kind {kind!r}", hint=f"choose one of {', '.join(KINDS)}")
    if info.device is not None and kind != built:
        raise ResdslError(
            f"{info.path} was compiled for {info.device}: its instances cannot be --kind {kind}",
            hint=f"recompile with --target {'llvm' if kind == 'cpu' else 'cuda'}, or use --kind {built}",
        )
    return {"cpu": "KIND_CPU", "gpu": "KIND_GPU", "auto": None}[kind]


def _dims(specs: list[TensorSpec], batched: bool, backend: str, what: str) -> list[list[int]]:
    out = []
    for spec in specs:
        if spec.dtype not in TRITON_DTYPES:
            raise ResdslError(f"{what} {spec.name!r} has dtype {spec.dtype}, which Triton cannot carry")
        dims = list(spec.shape[1:] if batched else spec.shape)
        dynamic = [d for i, d in enumerate(spec.shape) if isinstance(d, str) and i > 0]
        if dynamic and backend == "python":
            raise ResdslError(
                f"{what} {spec.name!r} has the dynamic dimension {dynamic[0]!r} besides the batch: "
                "resdsl's Python backend batches only along the first dimension",
                hint="compile with fixed sizes, or export an ONNX file with --backend onnxruntime",
            )
        out.append([d if isinstance(d, int) else -1 for d in dims])
    return out


def render_config(req: TritonExport, info: ArtifactInfo, name: str, backend: str) -> tuple[str, int]:
    """The config.pbtxt text and its max_batch_size."""
    in_names = {s.name for s in info.inputs}
    clash = sorted(in_names & {s.name for s in info.outputs})
    if clash:
        raise ResdslError(f"output {clash[0]!r} is named like an input: Triton needs distinct tensor names")
    if req.max_batch < 0 or req.instances < 1 or req.queue_delay_us < 0:
        raise ResdslError("--max-batch and --queue-delay-us must be >= 0 and --instances >= 1")
    symbolic = all(s.shape and isinstance(s.shape[0], str) for s in info.inputs + info.outputs)
    batch_symbols = {s.shape[0] for s in info.inputs + info.outputs if s.shape and isinstance(s.shape[0], str)}
    batched = req.max_batch > 0 and symbolic and len(batch_symbols) == 1
    max_batch_size = req.max_batch if batched else 0
    bad = [b for b in req.preferred_batch if not 1 <= b <= max(max_batch_size, 1)]
    if bad or (req.preferred_batch and not batched):
        raise ResdslError(
            f"--preferred-batch {','.join(map(str, req.preferred_batch))}: each must lie in 1..max_batch_size "
            f"({max_batch_size})"
        )
    kind = _kind(req, info)
    lines = [f"name: {_quote(name)}", f"backend: {_quote(backend)}", f"max_batch_size: {max_batch_size}"]
    for section, specs, what in (("input", info.inputs, "input"), ("output", info.outputs, "output")):
        lines.append(f"{section} [")
        entries = []
        for spec, dims in zip(specs, _dims(specs, batched, backend, what)):
            entries.append(
                f"  {{\n    name: {_quote(spec.name)}\n    data_type: {TRITON_DTYPES[spec.dtype]}\n"
                f"    dims: [ {', '.join(map(str, dims))} ]\n  }}"
            )
        lines.append(",\n".join(entries))
        lines.append("]")
    group = f"  {{\n    count: {req.instances}\n" + (f"    kind: {kind}\n" if kind else "") + "  }"
    lines += ["instance_group [", group, "]"]
    if batched and req.dynamic_batching:
        lines.append("dynamic_batching {")
        if req.preferred_batch:
            lines.append(f"  preferred_batch_size: [ {', '.join(map(str, req.preferred_batch))} ]")
        lines.append(f"  max_queue_delay_microseconds: {req.queue_delay_us}")
        lines.append("}")
    params = {
        "resdsl.version": info.resdsl_version,
        "resdsl.target": info.target,
        "resdsl.dtype": ",".join(sorted({s.dtype for s in info.inputs})),
        "resdsl.model": str(info.provenance.get("model", "")),
        "resdsl.model_hash": str(info.provenance.get("hash", "")),
        "resdsl.model_sha256": str(info.provenance.get("model_sha256", "")),
        "resdsl.arguments": json.dumps(info.provenance.get("arguments", {}), sort_keys=True, default=str),
        "resdsl.artifact": "model.onnx" if info.format == "onnx" else "artifact.so",
    }
    for key, value in params.items():
        lines.append(f"parameters: {{\n  key: {_quote(key)}\n  value: {{ string_value: {_quote(value)} }}\n}}")
    return "\n".join(lines) + "\n", max_batch_size


def _interface(text: str) -> str:
    """The part of a config every version must share (all but the provenance parameters and instances)."""
    return text.split("instance_group [", 1)[0]


def _quote(value: str) -> str:
    """A protobuf text-format string literal (non-ASCII as octal UTF-8 bytes)."""
    out = []
    for byte in value.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'
