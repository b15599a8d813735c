"""torchvision's other residual families (MobileNetV2/V3, EfficientNet, RegNet, ConvNeXt, ViT):
torchvision's parameter counts, state_dict entries and names, published MACs, and the -O2
pipeline equal to the reference interpreter on them. No torchvision needed: the figures are
written out here (scripts/check_torchvision.py compares logits against torchvision itself)."""

from __future__ import annotations

import pytest
from helpers import assert_close, example, interpret_random, randomize
from resdsl.passes import PassOptions, pipeline, run_passes

import resdsl
from resdsl.driver import CompileRequest, build_graph
from resdsl.ir import Graph
from resdsl.summary import summarize

# model: (file, parameters, state_dict entries with num_batches_tracked, published GMACs at 224)
MODELS = {
    "mobilenet_v2": ("mobilenet.py", 3_504_872, 314, 0.30),
    "mobilenet_v3_large": ("mobilenet.py", 5_483_032, 312, 0.22),
    "mobilenet_v3_small": ("mobilenet.py", 2_542_856, 244, None),
    "efficientnet_b0": ("efficientnet.py", 5_288_548, 360, 0.39),
    "regnet_y_400mf": ("regnet.py", 4_344_144, 384, 0.40),
    "convnext_tiny": ("convnext.py", 28_589_128, 182, 4.46),
    "vit_b_16": ("vit.py", 86_567_656, 152, 17.56),
}

# A sample of torchvision 0.29.1's state_dict names and shapes, written out from its models.
NAMES = {
    "mobilenet_v2": {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.1.conv.0.0.weight": (32, 1, 3, 3),
        "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.1.conv.2.running_var": (16,),
        "features.2.conv.0.0.weight": (96, 16, 1, 1),
        "features.2.conv.1.0.weight": (96, 1, 3, 3),
        "features.2.conv.3.bias": (24,),
        "features.18.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
    },
    "mobilenet_v3_large": {
        "features.1.block.0.0.weight": (16, 1, 3, 3),
        "features.4.block.2.fc1.weight": (24, 72, 1, 1),
        "features.4.block.2.fc2.bias": (72,),
        "features.16.0.weight": (960, 160, 1, 1),
        "classifier.0.weight": (1280, 960),
        "classifier.3.weight": (1000, 1280),
    },
    "mobilenet_v3_small": {
        "features.1.block.1.fc1.weight": (8, 16, 1, 1),
        "features.1.block.2.0.weight": (16, 16, 1, 1),
        "features.12.0.weight": (576, 96, 1, 1),
        "classifier.0.weight": (1024, 576),
    },
    "efficientnet_b0": {
        "features.1.0.block.0.0.weight": (32, 1, 3, 3),
        "features.1.0.block.1.fc1.weight": (8, 32, 1, 1),
        "features.2.0.block.0.0.weight": (96, 16, 1, 1),
        "features.2.0.block.2.fc1.weight": (4, 96, 1, 1),
        "features.6.3.block.3.1.running_mean": (192,),
        "features.8.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
    },
    "regnet_y_400mf": {
        "stem.0.weight": (32, 3, 3, 3),
        "trunk_output.block1.block1-0.proj.0.weight": (48, 32, 1, 1),
        "trunk_output.block1.block1-0.f.b.0.weight": (48, 8, 3, 3),
        "trunk_output.block1.block1-0.f.se.fc1.weight": (8, 48, 1, 1),
        "trunk_output.block2.block2-1.f.se.fc1.weight": (26, 104, 1, 1),
        "trunk_output.block4.block4-5.f.c.1.weight": (440,),
        "fc.weight": (1000, 440),
    },
    "convnext_tiny": {
        "features.0.0.weight": (96, 3, 4, 4),
        "features.0.1.weight": (96,),
        "features.1.0.layer_scale": (96, 1, 1),
        "features.1.0.block.0.weight": (96, 1, 7, 7),
        "features.1.0.block.2.bias": (96,),
        "features.1.0.block.3.weight": (384, 96),
        "features.1.0.block.5.weight": (96, 384),
        "features.2.0.weight": (96,),
        "features.2.1.weight": (192, 96, 2, 2),
        "features.5.8.layer_scale": (384, 1, 1),
        "classifier.0.weight": (768,),
        "classifier.2.weight": (1000, 768),
    },
    "vit_b_16": {
        "class_token": (1, 1, 768),
        "conv_proj.weight": (768, 3, 16, 16),
        "encoder.pos_embedding": (1, 197, 768),
        "encoder.layers.encoder_layer_0.ln_1.weight": (768,),
        "encoder.layers.encoder_layer_0.self_attention.in_proj_weight": (2304, 768),
        "encoder.layers.encoder_layer_0.self_attention.in_proj_bias": (2304,),
        "encoder.layers.encoder_layer_0.self_attention.out_proj.weight": (768, 768),
        "encoder.layers.encoder_layer_11.ln_2.bias": (768,),
        "encoder.layers.encoder_layer_11.mlp.0.weight": (3072, 768),
        "encoder.layers.encoder_layer_11.mlp.3.weight": (768, 3072),
        "encoder.ln.weight": (768,),
        "heads.head.weight": (1000, 768),
    },
}


def load(name: str, **kw) -> Graph:
    return resdsl.load(example(MODELS[name][0]), name, **kw)


def torch_entries(graph: Graph) -> int:
    """state_dict entries as torchvision counts them: each batch norm adds num_batches_tracked."""
    sd = graph.state_dict()
    return len(sd) + sum(k.endswith("running_var") for k in sd)


@pytest.mark.parametrize("name", list(MODELS))
def test_counts_names_and_macs_match_torchvision(name):
    _, params, entries, gmacs = MODELS[name]
    graph = load(name)  # 224x224, where the MACs are published
    assert graph.num_parameters() == params
    assert torch_entries(graph) == entries
    shapes = {k: v.shape for k, v in graph.state_dict().items()}
    assert {k: shapes.get(k) for k in NAMES[name]} == NAMES[name]
    assert not [n.name for n in graph.nodes() if n.role in ("shortcut", "projection")]  # the shortcuts pass added none
    if gmacs is not None:
        assert abs(summarize(graph).macs / 1e9 - gmacs) / gmacs < 0.03


SMALL = {name: 64 if name == "vit_b_16" else 32 for name in MODELS}


@pytest.mark.parametrize("name", list(MODELS))
def test_o2_pipeline_equals_interpreter_at_small_size(name):
    """Fold, fuse and drop-identity on these families keep the function (random weights and stats)."""
    graph = randomize(load(name, image_size=SMALL[name], num_classes=10))
    feeds, want = interpret_random(graph, batch=2)
    optimised = run_passes(graph.copy(), pipeline(2, PassOptions())).graph
    assert_close(resdsl.interpret(optimised, feeds), want)


@pytest.mark.parametrize(
    "name,records",
    [
        (
            "mobilenet_v2",
            {
                "eliminate_identity": {"removed": 1, "dropout": 1},
                "fold_batchnorm": {"folded": 52, "kept": 0},
                "fuse_add": {"fused_conv": 10, "sum": 0},
            },
        ),
        (
            "efficientnet_b0",
            {
                "eliminate_identity": {"removed": 10, "stochastic_depth": 9, "dropout": 1},
                "fold_batchnorm": {"folded": 49, "kept": 0},
                "fuse_add": {"fused_conv": 9, "sum": 0},
            },
        ),
    ],
)
def test_o2_folds_every_batch_norm_and_fuses_every_residual_add(name, records):
    """The --verbose pass counts: every BN folded, each residual add (10 in MobileNetV2, 9 in
    EfficientNet-B0, behind its stochastic depth) fused into the project conv."""
    graph, result = build_graph(CompileRequest(example(MODELS[name][0]), name, {"image_size": 32}, level=2))
    assert {r.name: r.counts for r in result.records if r.modified} == records
    assert not [n for n in graph.nodes() if n.op in ("batch_norm", "add")]
