"""Residual joins decided by what the branch does (issue 11, item 8).

Each case the shape-only rule got wrong: a shortcut that merely broadcasts (a 2x2 map
into a stride-2 block, a 1-channel input into a 16-channel block), a side of 1 under
stride 2, a stride-3 block on 4x4, and a torchvision-architecture resnet18 on a
rectangular image. Numbers are checked against the interpreter through ONNX Runtime,
and, where torch is installed, against a torchvision-style twin written here in
torch.nn that loads the same weights by name.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, randomize
from resdsl.backends import emit, make_options, open_artifact
from resdsl.passes import PassOptions, run_passes

import resdsl
from resdsl import ResdslError, blocks, nn
from resdsl.analysis import residual_joins
from resdsl.shapes import pair

# (input shape C, H, W; planes; stride) -> the branch's output grid, as torchvision computes it
CASES = {
    "broadcast-2x2-stride2": ((4, 2, 2), 8, 2, (1, 1)),
    "one-channel-into-16": ((1, 5, 5), 16, 1, (5, 5)),
    "side-1-stride2": ((4, 1, 3), 8, 2, (1, 2)),
    "stride3-on-4x4": ((4, 4, 4), 8, 3, (2, 2)),
}


@resdsl.model
def one_block(shape: tuple = (4, 2, 2), planes: int = 8, stride: int = 2):
    x = nn.input("x", shape)
    with nn.scope("layer1.0"):
        x = blocks.basic(x, planes, stride)
    return nn.output("y", x)


@resdsl.model
def resnet18_rect(num_classes: int = 10, height: int = 16, width: int = 64):
    """torchvision's resnet18 on a (3, height, width) image: layer4.0 sees a 1x2 map."""
    x = nn.input("image", (3, height, width))
    x = nn.relu(nn.batch_norm(nn.conv2d(x, 64, 7, stride=2, padding=3, bias=False, name="conv1"), name="bn1"))
    x = nn.max_pool2d(x, 3, stride=2, padding=1, name="maxpool")
    for stage, planes in enumerate((64, 128, 256, 512), start=1):
        for i in range(2):
            with nn.scope(f"layer{stage}.{i}"):
                x = blocks.basic(x, planes, 2 if stage > 1 and i == 0 else 1)
    x = nn.flatten(nn.global_avg_pool(x), name="flatten")
    return nn.output("logits", nn.linear(x, num_classes, name="fc"))


def _canonical(build, mode: str, **kwargs):
    return run_passes(build.build(**kwargs), ["shortcuts"], PassOptions(shortcut=mode), verify=True).graph


def _through_onnx(graph, tmp_path, batch: int = 2):
    feeds = resdsl.random_inputs(graph, batch, seed=4)
    path = str(tmp_path / "m.onnx")
    emit(graph, path, make_options("onnx"))
    assert_close(open_artifact(path, "cpu").run(feeds), resdsl.interpret(graph, feeds))
    return feeds


@pytest.mark.parametrize("case", sorted(CASES))
def test_join_is_projected_with_the_branchs_stride(case, tmp_path):
    shape, planes, stride, grid = CASES[case]
    g = randomize(_canonical(one_block, "B", shape=shape, planes=planes, stride=stride), seed=1)
    assert g.node(g.outputs[0][1]).shape == ("N", planes, *grid)
    ds = next(n for n in g.nodes() if n.name == "layer1.0.downsample.0")
    assert ds.attrs["stride"] == pair(stride) and ds.role == "projection"
    assert g.parameters["layer1.0.downsample.0.weight"].shape == (planes, shape[0], 1, 1)
    [join] = residual_joins(g)
    assert join.projected
    _through_onnx(g, tmp_path)


def test_side_of_one_in_a_non_square_map_strides_each_axis_alike():
    g = _canonical(one_block, "B", shape=(4, 3, 1), planes=4, stride=2)
    assert g.node(g.outputs[0][1]).shape == ("N", 4, 2, 1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_options_agree_on_the_joins(case, tmp_path):
    shape, planes, stride, _ = CASES[case]
    kwargs = {"shape": shape, "planes": planes, "stride": stride}
    joins = {}
    for mode in "ABC":
        g = randomize(_canonical(one_block, mode, **kwargs), seed=2)
        joins[mode] = [(g.node(j.node).name, j.projected) for j in residual_joins(g)]
        _through_onnx(g, tmp_path)
    assert joins["A"] == joins["B"] == joins["C"] == [("layer1.0.add", True)]


def test_option_a_subsamples_with_the_branchs_stride_and_pads():
    g = _canonical(one_block, "A", shape=(4, 4, 4), planes=8, stride=3)
    roles = [n for n in g.nodes() if n.role == "shortcut"]
    assert [n.op for n in roles] == ["avg_pool2d", "pad"]
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 4)).astype(np.float32)
    t = g.copy()
    t.outputs = [("y", roles[-1].id)]
    want = np.zeros((2, 8, 2, 2), np.float32)
    want[:, 2:6] = x[:, :, ::3, ::3]
    assert (resdsl.interpret(t, {"x": x})["y"] == want).all()


def test_equal_shapes_stay_identity_under_a_and_b():
    for mode in "AB":
        g = _canonical(one_block, mode, shape=(8, 4, 4), planes=8, stride=1)
        assert [j.projected for j in residual_joins(g)] == [False]


def test_a_deliberate_broadcast_is_not_a_join():
    @resdsl.model
    def scaled():
        x = nn.input("x", (4, 3, 3))
        y = nn.conv2d(x, 4, 3, padding=1, name="conv")
        y = y * nn.parameter("scale", (4, 1, 1), init="ones") + nn.parameter("shift", (4, 1, 1))
        y = blocks.squeeze_excite(y, 2)  # x * gate(x): a multiplication, never a join
        return nn.output("y", y + x)

    for mode in "ABC":
        g = run_passes(scaled.build(), ["shortcuts"], PassOptions(shortcut=mode), verify=True).graph
        joins = residual_joins(g)
        assert [g.node(j.node).name for j in joins] == ["add_1"]
        assert joins[0].projected == (mode == "C")


def test_a_branch_that_misses_the_strided_grid_is_refused_at_its_line():
    @resdsl.model
    def unpadded():
        x = nn.input("x", (4, 6, 6))
        y = nn.conv2d(x, 8, 3, stride=2)  # 6 -> 2, while a stride-2 shortcut gives 3
        return nn.output("y", y + x)

    with pytest.raises(ResdslError, match="strides by 2x2 .* but outputs 2x2") as info:
        unpadded.build()
    assert info.value.loc is not None and info.value.loc.line == unpadded.fn.__code__.co_firstlineno + 4


def test_resnet18_on_a_rectangular_image_compiles(tmp_path):
    g = randomize(_canonical(resnet18_rect, "B"), seed=3)
    assert g.num_parameters() == 11_689_512 - 990 * 513  # torchvision's resnet18 with a 10-class fc
    ds = {n.name: n.attrs["stride"] for n in g.nodes() if n.op == "conv2d" and n.role == "projection"}
    assert ds == {f"layer{s}.0.downsample.0": (2, 2) for s in (2, 3, 4)}
    _through_onnx(g, tmp_path, batch=1)


# ---------------------------------------------------------------- torchvision-style twins


def _torch_twins():
    torch = pytest.importorskip("torch")
    from torch import nn as tnn

    class BasicBlock(tnn.Module):
        """torchvision.models.resnet.BasicBlock, its downsample where stride or width change."""

        def __init__(self, cin: int, planes: int, stride: int) -> None:
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or cin != planes:
                self.downsample = tnn.Sequential(
                    tnn.Conv2d(cin, planes, 1, stride, bias=False), tnn.BatchNorm2d(planes)
                )

        def forward(self, x):
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

    class ResNet18(tnn.Module):
        def __init__(self, num_classes: int) -> None:
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            cin = 64
            for stage, planes in enumerate((64, 128, 256, 512), start=1):
                stride = 1 if stage == 1 else 2
                layer = tnn.Sequential(BasicBlock(cin, planes, stride), BasicBlock(planes, planes, 1))
                setattr(self, f"layer{stage}", layer)
                cin = planes
            self.fc = tnn.Linear(512, num_classes)

        def forward(self, x):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            for stage in range(1, 5):
                x = getattr(self, f"layer{stage}")(x)
            return self.fc(torch.flatten(x.mean((2, 3), keepdim=True), 1))

    return torch, BasicBlock, ResNet18


def _load_same_weights(torch, module, graph):
    state = {k: torch.from_numpy(np.array(v)) for k, v in graph.state_dict().items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    return module.eval()


def _wrap_block(torch, block):
    """The twin of ``one_block``: the block alone, in a ``layer1.0`` scope."""
    outer = torch.nn.Module()
    outer.layer1 = torch.nn.Sequential(block)
    outer.forward = lambda x: outer.layer1(x)
    return outer


@pytest.mark.parametrize("case", sorted(CASES))
def test_torchvision_twin_of_the_block_agrees(case):
    torch, BasicBlock, _ = _torch_twins()
    shape, planes, stride, _ = CASES[case]
    g = randomize(_canonical(one_block, "B", shape=shape, planes=planes, stride=stride), seed=5)
    twin = _load_same_weights(torch, _wrap_block(torch, BasicBlock(shape[0], planes, stride)), g)
    feeds = resdsl.random_inputs(g, 3, seed=6)
    with torch.no_grad():
        got = twin(torch.from_numpy(feeds["x"])).numpy()
    assert resdsl.max_rel_error(resdsl.interpret(g, feeds)["y"], got) < 1e-5


def test_torchvision_twin_of_resnet18_on_a_rectangular_image_agrees():
    torch, _, ResNet18 = _torch_twins()
    g = randomize(_canonical(resnet18_rect, "B"), seed=7)
    twin = _load_same_weights(torch, ResNet18(10), g)
    feeds = resdsl.random_inputs(g, 2, seed=8)
    with torch.no_grad():
        got = twin(torch.from_numpy(feeds["image"])).numpy()
    assert resdsl.max_rel_error(resdsl.interpret(g, feeds)["logits"], got) < 1e-5
