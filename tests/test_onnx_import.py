"""ONNX import, checked on files torch.onnx.export wrote: small twins of torchvision's ResNet
(BasicBlock, from benchmarks/torch_peer.py) and MobileNetV2 (inverted residuals with ReLU6), and a net
of the other mapped ops. Each is imported, compiled, and compared with ONNX Runtime running the
original file; the error cases are one ``resdsl: error:`` line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
import onnx  # noqa: E402
from torch import nn  # noqa: E402

from resdsl.analysis import residual_joins  # noqa: E402
from resdsl.cli import main  # noqa: E402
from resdsl.interpreter import interpret  # noqa: E402
from resdsl.numerics import max_rel_error  # noqa: E402
from resdsl.onnx_import import import_onnx  # noqa: E402
from resdsl.registry import missing_lowerings  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))
from torch_peer import BasicBlock, conv1x1  # noqa: E402

TOL = 1e-4


class TinyResNet(nn.Module):
    """torchvision's ResNet layout (stem, BasicBlocks with a downsample projection, avgpool, fc), narrow."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(8, 8))
        down = nn.Sequential(conv1x1(8, 16, 2), nn.BatchNorm2d(16))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2, down), BasicBlock(16, 16))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x))))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project; a residual when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inp * expand
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup),
        )  # fmt: skip

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TinyMobileNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        blocks = [InvertedResidual(8, 8, 1, 2), InvertedResidual(8, 12, 2, 3), InvertedResidual(12, 12, 1, 3)]
        self.features = nn.Sequential(stem, *blocks)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(12, 10))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class OpsNet(nn.Module):
    """The other mapped ops: shape arithmetic (x.view(x.size(0), -1)), the Erf form of Gelu, layer norm,
    softmax, hard activations, pooling modes, resize, transposed conv, concat and constant arithmetic."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.up = nn.ConvTranspose2d(6, 4, 2, stride=2)
        self.norm = nn.LayerNorm(40)
        self.fc = nn.Linear(40, 8)

    def forward(self, x):
        y = nn.functional.hardswish(self.conv(x))
        y = nn.functional.avg_pool2d(y, 3, 2, 1, ceil_mode=True, count_include_pad=False)
        z = nn.functional.interpolate(torch.sigmoid(y), scale_factor=2.0, mode="nearest")
        y = torch.cat([self.up(y)[:, :, :8, :8], nn.functional.leaky_relu(z[:, :2, :8, :8], 0.1)], dim=1)
        y = (y * 0.5 - 1.0) / 2.0
        y = nn.functional.max_pool2d(y, 2).permute(0, 2, 3, 1)
        y = y.reshape(y.size(0), -1)[:, :40]
        y = nn.functional.gelu(self.norm(y))
        return torch.softmax(self.fc(y), dim=-1)


def _randomise(module: nn.Module) -> nn.Module:
    """Batch-norm statistics and affine terms away from identity, so folding them is really checked."""
    torch.manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return module.eval()


def export(module: nn.Module, path: str, size: int, dynamo: bool = False) -> str:
    import warnings

    example = torch.randn(1, 3, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("N", min=1, max=64)
            torch.onnx.export(module, (example,), path, input_names=["input"], output_names=["logits"],
                              dynamic_shapes=({0: batch},), dynamo=True, opset_version=18)  # fmt: skip
        else:
            torch.onnx.export(module, (example,), path, input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, opset_version=17, dynamo=False)  # fmt: skip
    return path


def ort_run(path: str, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def compiled(tmp_path, onnx_path: str, target: str) -> str:
    suffix = ".so" if target == "llvm" else ".onnx"
    out = str(tmp_path / f"compiled_{target}{suffix}")
    assert main(["compile", onnx_path, "--target", target, "-O", "2", "-o", out]) == 0
    return out


def run_artifact(path: str, x: np.ndarray) -> np.ndarray:
    from resdsl.backends import open_artifact

    return open_artifact(path, "cpu").run({"input": x})["logits"]


def check_against_ort(tmp_path, onnx_path: str, size: int, targets=("onnx-ort", "llvm")) -> None:
    import resdsl.backends.onnx.emit  # noqa: F401  (each backend registers its lowerings at import)
    import resdsl.backends.tvm.lower  # noqa: F401

    x = np.random.default_rng(3).standard_normal((3, 3, size, size)).astype(np.float32)  # batch 3: the axis is dynamic
    want = ort_run(onnx_path, x)
    graph = import_onnx(onnx_path)
    assert max_rel_error(interpret(graph, {"input": x})["logits"], want) < TOL
    for target in targets:
        missing = sorted(
            {n.op for n in graph.compute_nodes()} & set(missing_lowerings("tvm" if target == "llvm" else target))
        )
        if missing:
            pytest.skip(f"{target} lacks lowerings of {missing} (another branch adds them)")
        got = run_artifact(compiled(tmp_path, onnx_path, target), x)
        assert max_rel_error(got, want) < TOL, target


def test_resnet_twin(tmp_path, capsys):
    path = export(_randomise(TinyResNet()), str(tmp_path / "resnet.onnx"), 16)
    joins = residual_joins(import_onnx(path))
    assert len(joins) == 3 and sum(j.projected for j in joins) == 1  # the downsample is told by its role
    assert main(["show", path]) == 0
    assert "residual connections:  3 (1 with projections)" in capsys.readouterr().out
    check_against_ort(tmp_path, path, 16)


def test_resnet_twin_dynamo(tmp_path):
    pytest.importorskip("onnxscript")
    path = export(_randomise(TinyResNet()), str(tmp_path / "resnet_dynamo.onnx"), 16, dynamo=True)
    assert len(residual_joins(import_onnx(path))) == 3
    check_against_ort(tmp_path, path, 16, targets=("onnx-ort",))


def test_mobilenet_twin(tmp_path):
    path = export(_randomise(TinyMobileNetV2()), str(tmp_path / "mobilenet.onnx"), 16)
    assert len(residual_joins(import_onnx(path))) == 2
    check_against_ort(tmp_path, path, 16)


def test_other_ops(tmp_path):
    path = export(OpsNet().eval(), str(tmp_path / "ops.onnx"), 16)
    ops = {n.op for n in import_onnx(path).compute_nodes()}
    assert {"gelu", "layer_norm", "softmax", "resize", "conv_transpose2d", "slice", "concat"} <= ops
    check_against_ort(tmp_path, path, 16, targets=("onnx-ort",))


def test_import_command_round_trip(tmp_path):
    path = export(_randomise(TinyResNet()), str(tmp_path / "resnet.onnx"), 16)
    model = str(tmp_path / "resnet.py")
    assert main(["import", path, "-o", model]) == 0
    out = str(tmp_path / "from_dsl.onnx")
    assert (
        main(["compile", model, "--weights", str(tmp_path / "resnet.safetensors"), "--target", "onnx-ort", "-o", out])
        == 0
    )
    x = np.random.default_rng(5).standard_normal((2, 3, 16, 16)).astype(np.float32)
    assert max_rel_error(run_artifact(out, x), ort_run(path, x)) < TOL


def test_run_check_and_model_flags(tmp_path, capsys):
    path = export(_randomise(TinyResNet()), str(tmp_path / "resnet.onnx"), 16)
    art = compiled(tmp_path, path, "onnx-ort")
    assert main(["run", art, "--random", "--batch", "2", "--check", path]) == 0
    assert "OK: max relative error" in capsys.readouterr().out
    assert main(["show", path, "--arg", "width=2"]) == 2
    assert "--arg width does not apply to an ONNX file" in capsys.readouterr().err


def _cli_error(*argv: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "resdsl.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("resdsl: error:"), proc.stderr
    return lines[0]


def _save(tmp_path, nodes, inputs, name: str, initializers=()) -> str:
    from onnx import TensorProto, helper

    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", inputs, [out], initializer=list(initializers))
    path = str(tmp_path / name)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _input(shape):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)


def test_unsupported_ops_are_listed_at_once(tmp_path):
    from onnx import helper

    nodes = [helper.make_node("Sin", ["x"], ["a"], name="sin0"), helper.make_node("Relu", ["a"], ["b"], name="r"),
             helper.make_node("Cos", ["b"], ["y"], name="cos0")]  # fmt: skip
    line = _cli_error("show", _save(tmp_path, nodes, [_input(["N", 3, 4, 4])], "bad.onnx"))
    assert "Sin (nodes 'sin0')" in line and "Cos (nodes 'cos0')" in line


def test_truncated_file(tmp_path):
    path = export(_randomise(TinyResNet()), str(tmp_path / "resnet.onnx"), 16)
    data = open(path, "rb").read()
    cut = str(tmp_path / "cut.onnx")
    with open(cut, "wb") as f:
        f.write(data[: len(data) // 2])
    assert "truncated or corrupt" in _cli_error("compile", cut, "-o", str(tmp_path / "o.onnx"))


def test_missing_external_data(tmp_path):
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    path = _save(tmp_path, nodes, [_input(["N", 3, 4, 4])], "ext.onnx", [w])
    model = onnx.load(path)
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="ext.data",
              size_threshold=0)  # fmt: skip
    os.remove(tmp_path / "ext.data")
    assert "external data 'ext.data'" in _cli_error("show", path)


def test_dynamic_spatial_size(tmp_path):
    from onnx import helper

    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    line = _cli_error("show", _save(tmp_path, nodes, [_input(["N", 3, "H", 8])], "dyn.onnx"))
    assert "dynamic size 'H' in dimension 2" in line
