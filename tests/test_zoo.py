"""The model zoo: published parameter counts, and every example equal to the reference
interpreter on every target (small input sizes; the 1001-layer net is only counted)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import resdsl
from resdsl.numerics import TOLERANCE

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")


def load(file, name, **kw):
    return resdsl.load(os.path.join(EXAMPLES, file), name, **kw)


# ------------------------------------------------------------------ parameter counts

PUBLISHED = [
    ("cifar_resnet.py", "resnet20", {}, 269_722),  # He et al. 2015: 0.27M
    ("cifar_resnet.py", "resnet56", {}, 853_018),  # 0.85M
    ("cifar_resnet.py", "resnet110", {}, 1_727_962),  # 1.7M
    ("transformer.py", "vit", {}, 5_717_416),  # ViT-Ti/16 (timm vit_tiny_patch16_224)
    ("transformer.py", "sequence_encoder", {"depth": 1, "final_norm": False}, 7_087_872),  # one BERT-base layer
]


@pytest.mark.parametrize("file,name,kw,count", PUBLISHED, ids=[p[1] for p in PUBLISHED])
def test_published_parameter_counts(file, name, kw, count):
    assert load(file, name, **kw).num_parameters() == count


def test_cifar_resnets_use_parameter_free_option_a_shortcuts():
    g = load("cifar_resnet.py", "resnet32")
    assert g.num_parameters() == 464_154  # 0.46M
    assert not [n for n in g.nodes() if n.role == "projection"]
    assert [n.name for n in g.nodes() if n.role == "shortcut"] == [
        "layer2.0.shortcut.stride",
        "layer2.0.shortcut.pad",
        "layer3.0.shortcut.stride",
        "layer3.0.shortcut.pad",
    ]


def test_preact_resnet1001_has_about_10_2m_parameters():
    g = load("preact_resnet.py", "preact_resnet1001")
    convs = sum(v.size for k, v in g.parameters.items() if v.ndim >= 2 or k.startswith("fc."))
    assert round(convs / 1e5) == 102  # the paper's 10.2M counts convolutions and the classifier
    assert abs(g.num_parameters() - 10.2e6) / 10.2e6 < 0.02  # batch norms add 1.3%
    assert sum(1 for n in g.nodes() if n.op == "conv2d" and "downsample" not in n.name) == 1 + 3 * 111 * 3


def preact_count(bottleneck, layers, classes=1000):
    """Pre-activation ImageNet ResNet parameters from the architecture, written out independently."""
    exp = 4 if bottleneck else 1
    total = 64 * 3 * 49 + 2 * 64  # stem conv and its batch norm
    cin = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), layers)):
        for i in range(count):
            total += 0 if stage == 0 and i == 0 else 2 * cin  # bn1 on the block input
            if bottleneck:
                total += cin * planes + 2 * planes + 9 * planes * planes + 2 * planes + planes * planes * exp
            else:
                total += 9 * cin * planes + 2 * planes + 9 * planes * planes
            if cin != planes * exp or (stage > 0 and i == 0):
                total += cin * planes * exp + 2 * planes * exp  # downsample conv + bn (option B)
            cin = planes * exp
    return total + 2 * cin + cin * classes + classes


@pytest.mark.parametrize(
    "name,bottleneck,layers", [("preact_resnet18", False, (2, 2, 2, 2)), ("preact_resnet50", True, (3, 4, 6, 3))]
)
def test_preact_imagenet_counts(name, bottleneck, layers):
    assert load("preact_resnet.py", name, image_size=64).num_parameters() == preact_count(bottleneck, layers)


def test_residual_mlp_and_highway_counts():
    g = load("residual_mlp.py", "residual_mlp", in_features=8, widths=(16, 32), blocks_per_stage=2, expansion=2)

    def block(cin, width):  # norm on the input width, fc1 to 2 x width, fc2 back to width
        return 2 * cin + cin * 2 * width + 2 * width + 2 * width * width + width

    blocks = 2 * block(16, 16) + block(16, 32) + block(32, 32)
    want = 8 * 16 + 16 + blocks + 16 * 32 + 2 * 32 + 32 * 10 + 10
    assert g.num_parameters() == want
    assert [n.name for n in g.nodes() if n.role == "projection" and n.op == "linear"] == ["stages.1.0.proj"]
    g = load("highway.py", "highway", in_features=20, width=8, depth=3)
    assert g.num_parameters() == 20 * 8 + 8 + 3 * 2 * (8 * 8 + 8) + 8 * 10 + 10


@pytest.mark.skipif(not os.path.exists(os.path.join(EXAMPLES, "resnet.py")), reason="examples/resnet.py not written")
@pytest.mark.parametrize("name,count", [("wide_resnet50_2", 68_883_240), ("resnext50_32x4d", 25_028_904)])
def test_torchvision_variants(name, count):
    g = load("resnet.py", name, image_size=32)
    assert g.num_parameters() == count
    assert len(g.state_dict()) + sum(k.endswith("running_var") for k in g.state_dict()) == 320


# ------------------------------------------------------------------ every target equals the interpreter

SMALL = {
    "resnet20": ("cifar_resnet.py", "resnet20", {"image_size": 16}),
    "preact_cifar": ("preact_resnet.py", "preact_resnet1001", {"blocks_per_stage": 1, "image_size": 16}),
    "preact18": ("preact_resnet.py", "preact_resnet18", {"image_size": 32, "num_classes": 10}),
    "preact50": ("preact_resnet.py", "preact_resnet50", {"image_size": 32, "num_classes": 10}),
    "vit": (
        "transformer.py",
        "vit",
        {"image_size": 16, "patch": 4, "dim": 32, "depth": 2, "heads": 4, "num_classes": 10},
    ),
    "vit_mean": (
        "transformer.py",
        "vit",
        {
            "image_size": 16,
            "patch": 8,
            "dim": 16,
            "depth": 1,
            "heads": 2,
            "num_classes": 5,
            "class_token": False,
            "position_embedding": False,
        },
    ),
    "encoder": ("transformer.py", "sequence_encoder", {"seq_len": 6, "dim": 32, "depth": 2, "heads": 4}),
    "residual_mlp": ("residual_mlp.py", "residual_mlp", {"in_features": 12, "widths": (16, 24), "blocks_per_stage": 1}),
    "highway": ("highway.py", "highway", {"in_features": 20, "width": 16, "depth": 3}),
    # torchvision's other residual families, at 32x32 (their full width: the exact torchvision layers)
    "mobilenet_v2": ("mobilenet.py", "mobilenet_v2", {"image_size": 32, "num_classes": 10}),
    "mobilenet_v3_large": ("mobilenet.py", "mobilenet_v3_large", {"image_size": 32, "num_classes": 10}),
    "mobilenet_v3_small": ("mobilenet.py", "mobilenet_v3_small", {"image_size": 32, "num_classes": 10}),
    "efficientnet_b0": ("efficientnet.py", "efficientnet_b0", {"image_size": 32, "num_classes": 10}),
    "regnet_y_400mf": ("regnet.py", "regnet_y_400mf", {"image_size": 32, "num_classes": 10}),
    "convnext_tiny": ("convnext.py", "convnext_tiny", {"image_size": 32, "num_classes": 10}),
    "vit_b_16": ("vit.py", "vit_b_16", {"image_size": 32, "num_classes": 10}),
}
# vit_b_16 holds 86M parameters whatever the image: its llvm module alone takes minutes to build on
# 2 cores, so it runs on the ONNX targets; the small ViT above covers the same ops on llvm.
CASES = [(k, t) for k in SMALL for t in ("onnx", "onnx-ort", "llvm") if (k, t) != ("vit_b_16", "llvm")]


@pytest.mark.parametrize("key,target", CASES, ids=[f"{k}-{t}" for k, t in CASES])
def test_example_compiles_and_run_check_passes(key, target, tmp_path, capsys):
    """What a user runs: `resdsl compile` (-O2) then `resdsl run --random --check` on fresh inputs."""
    from resdsl import backends
    from resdsl.cli import main

    file, name, kw = SMALL[key]
    path = str(tmp_path / f"{key}{backends.resolve_target(target).extension}")
    model_args = [a for k, v in kw.items() for a in ("--arg", f"{k}={v!r}".replace(" ", ""))]
    model_file = os.path.join(EXAMPLES, file)
    assert main(["compile", model_file, "--model", name, *model_args, "--target", target, "-o", path]) == 0
    seed = str(np.random.SeedSequence().entropy % 2**32)
    assert main(["run", path, "--random", "--batch", "2", "--seed", seed, "--check", model_file]) == 0
    report = capsys.readouterr().out
    errors = [
        float(line.split("max relative error ")[1].split()[0]) for line in report.splitlines() if "check " in line
    ]
    assert errors and max(errors) < TOLERANCE, report
