"""The ImageNet ResNets: torchvision's parameter counts, names and shapes; end-to-end ONNX Runtime runs."""

from __future__ import annotations

import pytest
from helpers import assert_close, example, interpret_random
from resdsl.backends import OnnxOptions, emit, open_artifact
from resdsl.backends.onnx.runner import OrtRunner

import resdsl

RESNET = example("resnet.py")

# NOTES.md: torchvision's parameter counts and state_dict sizes (the latter include num_batches_tracked).
COUNTS = {
    "resnet18": (11_689_512, 122),
    "resnet34": (21_797_672, 218),
    "resnet50": (25_557_032, 320),
    "resnet101": (44_549_160, 626),
    "resnet152": (60_192_808, 932),
}
LAYERS = {
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
}


def torchvision_state_dict_shapes(name: str) -> dict[str, tuple]:
    """torchvision's resnet state_dict names and shapes, written out from its architecture."""
    bottleneck = name not in ("resnet18", "resnet34")
    exp = 4 if bottleneck else 1
    out: dict[str, tuple] = {}

    def bn(prefix, c):
        for k in ("weight", "bias", "running_mean", "running_var"):
            out[f"{prefix}.{k}"] = (c,)
        out[f"{prefix}.num_batches_tracked"] = ()

    out["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), LAYERS[name]), start=1):
        for i in range(blocks):
            p = f"layer{stage}.{i}"
            stride = 2 if stage > 1 and i == 0 else 1
            if bottleneck:
                convs = [(planes, inplanes, 1), (planes, planes, 3), (planes * 4, planes, 1)]
            else:
                convs = [(planes, inplanes, 3), (planes, planes, 3)]
            for j, (o, c, k) in enumerate(convs, start=1):
                out[f"{p}.conv{j}.weight"] = (o, c, k, k)
                bn(f"{p}.bn{j}", o)
            if stride != 1 or inplanes != planes * exp:
                out[f"{p}.downsample.0.weight"] = (planes * exp, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * exp)
            inplanes = planes * exp
    out["fc.weight"] = (1000, 512 * exp)
    out["fc.bias"] = (1000,)
    return out


@pytest.mark.parametrize("name", list(COUNTS))
def test_parameter_counts_and_names_match_torchvision(name):
    graph = resdsl.load(RESNET, name, image_size=32)
    params, entries = COUNTS[name]
    assert graph.num_parameters() == params
    expected = torchvision_state_dict_shapes(name)
    assert len(expected) == entries
    ours = {k: v.shape for k, v in graph.state_dict().items()}
    assert ours == {k: v for k, v in expected.items() if not k.endswith("num_batches_tracked")}


def test_builds_are_deterministic():
    a = resdsl.load(RESNET, "resnet18", image_size=32)
    b = resdsl.load(RESNET, "resnet18", image_size=32)
    assert a.to_text() == b.to_text()
    assert all((a.parameters[k] == b.parameters[k]).all() for k in a.parameters)


def test_onnx_bytes_are_deterministic(tmp_path):
    paths = []
    for i in range(2):
        g = resdsl.load(RESNET, "resnet18", image_size=32)
        paths.append(str(tmp_path / f"m{i}.onnx"))
        emit(g, paths[-1], OnnxOptions())
    assert open(paths[0], "rb").read() == open(paths[1], "rb").read()


@pytest.mark.parametrize(
    "model_file,name,kwargs",
    [
        (RESNET, "resnet18", {"image_size": 64}),
        (example("tiny.py"), None, {}),
    ],
)
def test_end_to_end_onnxruntime_equals_interpreter(model_file, name, kwargs, tmp_path):
    from helpers import randomize

    graph = randomize(resdsl.load(model_file, name, **kwargs))
    feeds, want = interpret_random(graph, batch=2)
    path = str(tmp_path / "m.onnx")
    emit(graph, path, OnnxOptions())
    assert_close(open_artifact(path, "cpu").run(feeds), want)
    assert_close(OrtRunner(path, "cpu", optimize=False).run(feeds), want)
