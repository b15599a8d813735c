"""``resdsl export MODEL.py --target torch``: the exported module computes what the interpreter does.

Every op case of the registry and every example model go through the exported file, with
resdsl's weights loaded by state_dict name (strict), in eval(); a checkpoint PyTorch saved
after training loads back into ``resdsl compile --weights`` and runs identically in ONNX
Runtime and TVM; the file runs where resdsl is not importable.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import example, randomize, single_op
from op_cases import op_cases

import resdsl
from resdsl import registry
from resdsl.driver import CompileRequest, build_graph
from resdsl.errors import ResdslError
from resdsl.ir import BUFFER, Graph
from resdsl.numerics import max_rel_error
from resdsl.torch_export import TORCH_OPS, export, generate
from resdsl.torch_export.ops import LAYERS

torch = pytest.importorskip("torch")
torch.set_num_threads(2)
TOL = 1e-5
_count = itertools.count()


def load_module(path: str):
    """Import an exported file under a fresh name (each test writes its own)."""
    spec = importlib.util.spec_from_file_location(f"exported_{next(_count)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torch_model(graph, tmp_path, name="exported.py"):
    """The exported module of ``graph`` holding ``graph``'s weights (strict load), in eval()."""
    path = tmp_path / name
    text, _ = generate(graph)
    path.write_text(text)
    model = load_module(str(path)).Model()
    state = {k: torch.from_numpy(np.array(v)) for k, v in graph.state_dict().items()}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):  # PyTorch bookkeeping resdsl does not keep
            state[key] = value
    model.load_state_dict(state, strict=True)
    return model.eval()


def run_torch(model, graph, feeds: dict) -> dict:
    with torch.no_grad():
        out = model(*[torch.from_numpy(feeds[graph.node(i).attrs["name"]]) for i in graph.inputs])
    outs = out if isinstance(out, tuple) else (out,)
    return {name: o.numpy() for (name, _), o in zip(graph.outputs, outs)}


def check_against_interpreter(graph, tmp_path, tol=TOL) -> float:
    model = torch_model(graph, tmp_path)
    feeds = resdsl.random_inputs(graph, batch=2, seed=1)
    want = resdsl.interpret(graph, feeds)
    got = run_torch(model, graph, feeds)
    worst = 0.0
    for k in want:
        assert got[k].shape == want[k].shape, k
        err = max_rel_error(got[k], want[k])
        assert err < tol, f"{k}: max relative error {err:.3e}"
        worst = max(worst, err)
    return worst


# ---------------------------------------------------------------- ops

CASES = op_cases()


def test_every_op_has_a_pytorch_rendering():
    assert sorted(set(registry.OPS) - registry.SOURCES - set(TORCH_OPS)) == []


def test_an_op_without_a_rendering_is_a_clear_error(monkeypatch, tmp_path):
    graph = single_op("relu", [(2, 3)])
    monkeypatch.delitem(TORCH_OPS, "relu")
    with pytest.raises(ResdslError, match="op 'relu' has no PyTorch rendering"):
        generate(graph)


def case_graph(op, shapes, attrs, params):
    """``single_op``, plus the embedding case's "ids": an int64 input of indices."""
    if "ids" not in shapes:
        return single_op(op, shapes, attrs, params)
    g = Graph(f"single_{op}")
    ids = g.add_input("ids", ("N", 5), dtype="int64")
    table = np.random.default_rng(0).standard_normal(params["w"]).astype(np.float32)
    g.set_output("y", g.add_node(op, [ids, g.add_param("w", table)], attrs, name="out"))
    return g


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_functional(case, tmp_path):
    """Free parameters (named w, b): the functional rendering (F.conv2d(x, self.w, ...))."""
    _, op, shapes, attrs, params = case
    check_against_interpreter(case_graph(op, shapes, attrs, params), tmp_path)


LAYER_CASES = [c for c in CASES if c[1] in LAYERS]


@pytest.mark.parametrize("case", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_op_as_layer(case, tmp_path):
    """Parameters named as a layer's (layer.weight, layer.bias): rendered as nn.Conv2d, nn.BatchNorm2d, ..."""
    _, op, shapes, attrs, params = case
    graph = case_graph(op, shapes, attrs, params)
    out = next(n for n in graph.nodes() if n.name == "out")
    for pos, src in enumerate(graph.args(out.id)):
        node = graph.node(src)
        if node.op != "param" or pos not in LAYERS[op].roles:
            continue
        old, new = node.attrs["name"], f"layer.{LAYERS[op].roles[pos]}"
        graph.parameters[new] = graph.parameters.pop(old)
        kind = graph.param_kind.pop(old)
        graph.param_kind[new] = BUFFER if new.endswith(("running_mean", "running_var")) else kind
        node.attrs["name"] = node.name = new
    text, _ = generate(graph)
    assert "self.layer(" in text, text
    check_against_interpreter(graph, tmp_path)


# ---------------------------------------------------------------- example models

# (file, model, arguments): every model of examples/, at sizes the interpreter runs quickly.
EXAMPLES = [
    ("tiny.py", "tiny", {}),
    *[("cifar_resnet.py", f"resnet{d}", {"image_size": 16}) for d in (20, 32, 44, 56, 110)],
    *[
        ("resnet.py", m, {"image_size": 32, "num_classes": 10})
        for m in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "resnext50_32x4d")
    ],
    ("preact_resnet.py", "preact_resnet18", {"image_size": 32, "num_classes": 10}),
    ("preact_resnet.py", "preact_resnet50", {"image_size": 32, "num_classes": 10}),
    ("preact_resnet.py", "preact_resnet1001", {"image_size": 16, "blocks_per_stage": 3}),
    ("highway.py", "highway", {}),
    ("residual_mlp.py", "residual_mlp", {}),
    ("transformer.py", "vit", {"image_size": 32, "patch": 8, "dim": 32, "depth": 2, "heads": 2}),
    ("transformer.py", "vit", {"image_size": 32, "patch": 8, "dim": 32, "depth": 1, "heads": 2, "class_token": False}),
    ("transformer.py", "sequence_encoder", {"seq_len": 8, "dim": 32, "depth": 2, "heads": 2}),
    *[
        (f, m, {"image_size": 32, "num_classes": 10})
        for f, m in (
            ("mobilenet.py", "mobilenet_v2"),
            ("mobilenet.py", "mobilenet_v3_large"),
            ("mobilenet.py", "mobilenet_v3_small"),
            ("efficientnet.py", "efficientnet_b0"),
            ("regnet.py", "regnet_y_400mf"),
            ("convnext.py", "convnext_tiny"),
            ("vit.py", "vit_b_16"),
        )
    ],
]
# Nothing is left out: preact_resnet1001 runs with 3 blocks a stage (29 layers) instead of 111, the
# only change beyond image sizes and class counts, so that the numpy interpreter stays fast.


def test_the_example_list_covers_every_example_model():
    listed = {(f, m) for f, m, _ in EXAMPLES}
    for f in sorted(os.listdir(example(""))):
        if f.endswith(".py"):
            for name in resdsl.load_models(example(f)):
                assert (f, name) in listed, f"{f}:{name} is not in EXAMPLES"


def _graph(file, name, args, **kw):
    graph, _ = build_graph(CompileRequest(example(file), name, args, level=0, **kw))
    return randomize(graph)


@pytest.mark.parametrize("file,name,args", EXAMPLES, ids=[f"{m}-{i}" for i, (_, m, _) in enumerate(EXAMPLES)])
def test_example_equals_interpreter(file, name, args, tmp_path):
    check_against_interpreter(_graph(file, name, args), tmp_path)


@pytest.mark.parametrize("kw", [{"shortcut": "B"}, {"shortcut": "C"}, {"residual_scale": "0.2"}])
def test_shortcut_and_residual_scale_as_compile_applies_them(kw, tmp_path):
    graph = _graph("cifar_resnet.py", "resnet20", {"image_size": 16}, **kw)
    if "shortcut" in kw:
        assert any(k.endswith("downsample.0.weight") for k in graph.state_dict())
    check_against_interpreter(graph, tmp_path)


def test_inv_depth_scaling(tmp_path):
    graph = _graph("tiny.py", "tiny", {}, residual_scale="inv-depth")
    assert "* 1.0" in generate(graph)[0]  # 1/L with L = 1 residual add
    check_against_interpreter(graph, tmp_path)


def test_resnet18_state_dict_is_torchvisions(tmp_path):
    """Keys (in order), shapes and counts of torchvision's resnet18 (0.29.1): 122 entries, 11,689,512 parameters."""
    graph = _graph("resnet.py", "resnet18", {"image_size": 64})
    model = torch_model(graph, tmp_path)
    sd = model.state_dict()
    keys = ["conv1.weight", *[f"bn1.{s}" for s in BN]]
    for stage in range(1, 5):
        for block in range(2):
            p = f"layer{stage}.{block}"
            for i in (1, 2):
                keys += [f"{p}.conv{i}.weight", *[f"{p}.bn{i}.{s}" for s in BN]]
            if stage > 1 and block == 0:
                keys += [f"{p}.downsample.0.weight", *[f"{p}.downsample.1.{s}" for s in BN]]
    keys += ["fc.weight", "fc.bias"]
    assert list(sd) == keys
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    assert tuple(sd["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1)
    assert "(downsample): ModuleList(" in str(model)


BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


# ---------------------------------------------------------------- training behaviour


def test_train_mode_is_pytorchs(tmp_path):
    """Batch norm updates its statistics in train(); dropout and stochastic depth act only in train()."""
    graph = _graph("resnet.py", "resnet18", {"image_size": 32, "num_classes": 10})
    model = torch_model(graph, tmp_path).train()
    before = model.layer1[0].bn1.running_mean.clone()
    model(torch.randn(4, 3, 32, 32))
    assert not torch.equal(before, model.layer1[0].bn1.running_mean)
    assert int(model.layer1[0].bn1.num_batches_tracked) == 1

    for op, attrs in (("dropout", {"p": 0.5}), ("stochastic_depth", {"p": 0.5, "mode": "row"})):
        m = torch_model(single_op(op, [(64, 32)], attrs), tmp_path, f"{op}.py")
        x = torch.ones(64, 32)
        assert torch.equal(m.eval()(x), x)
        y = m.train()(x)
        assert (y == 0).any() and (y == 2).any() and set(torch.unique(y).tolist()) <= {0.0, 2.0}
        if op == "stochastic_depth":  # whole rows
            assert all(len(set(r.tolist())) == 1 for r in y)


def test_exported_file_imports_only_torch_and_runs_without_resdsl(tmp_path):
    out = tmp_path / "r18_torch.py"
    written = export(CompileRequest(example("resnet.py"), "resnet18", {"image_size": 32}), str(out))
    assert written.class_name == "Resnet18"
    imported = set()
    for node in ast.walk(ast.parse(out.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"torch", "math"}, imported
    site = os.path.dirname(os.path.dirname(torch.__file__))
    code = (
        f"import sys; sys.path[:0] = [{str(tmp_path)!r}, {site!r}]; import importlib.util\n"
        "assert importlib.util.find_spec('resdsl') is None, 'resdsl is importable'\n"
        "import torch, r18_torch\n"
        "print(tuple(r18_torch.Resnet18().eval()(torch.randn(1, 3, 32, 32)).shape))"
    )
    # -I: no user site, no PYTHONPATH, no current directory; -S: no .pth file (the editable install's)
    run = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(1, 1000)"


def test_export_cli_errors(tmp_path):
    for argv, message in (
        (["export", example("tiny.py"), "--target", "torch", "-o", str(tmp_path / "m.txt")], "must end in .py"),
        (["export", example("tiny.py"), "--target", "jax", "-o", str(tmp_path / "m.py")], "invalid choice"),
        (["export", example("tiny.py"), "-o", str(tmp_path / "m.py")], "--target"),
        (["export", "nope.py", "--target", "torch", "-o", str(tmp_path / "m.py")], "does not exist"),
    ):
        run = subprocess.run([sys.executable, "-m", "resdsl.cli", *argv], capture_output=True, text=True)
        assert run.returncode == 2, (argv, run.stderr)
        assert run.stderr.startswith("resdsl: error:") and message in run.stderr, run.stderr


# ---------------------------------------------------------------- trained in PyTorch, compiled by resdsl


def _cli(*argv: str) -> None:
    from resdsl.cli import main

    assert main(list(argv)) == 0, argv


def test_checkpoint_trained_in_pytorch_compiles_and_runs_identically(tmp_path):
    """tiny (a projection shortcut: downsample.0/1): train a few steps, torch.save, resdsl compile
    --weights to ONNX and llvm; both equal PyTorch's eval output."""
    from resdsl.backends import open_artifact

    exported, ckpt = tmp_path / "tiny_torch.py", tmp_path / "trained.pt"
    _cli("export", example("tiny.py"), "--target", "torch", "-o", str(exported))
    model = load_module(str(exported)).Model()
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32)), torch.randint(0, 10, (8,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    sd = model.state_dict()
    assert int(sd["layer1.0.downsample.1.num_batches_tracked"]) == 3
    torch.save(sd, ckpt)
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x)).numpy()
    for target, out in (("onnx", "tiny.onnx"), ("llvm", "tiny.so")):
        _cli("compile", example("tiny.py"), "--weights", str(ckpt), "--target", target, "-o", str(tmp_path / out))
        got = open_artifact(str(tmp_path / out), "cpu").run({"image": x})["logits"]
        assert max_rel_error(got, want) < 1e-4, target


def test_train_digits_short_run(tmp_path):
    """examples/train_digits.py end to end on 300 images, one epoch: the three accuracies are equal
    and the predictions identical (the full run's > 90% is in the README)."""
    spec = importlib.util.spec_from_file_location("train_digits", example("train_digits.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    accuracy = script.main(["--epochs", "1", "--limit", "300", "--workdir", str(tmp_path)])
    assert set(accuracy) == {"PyTorch", "ONNX Runtime", "TVM llvm"}
    assert len(set(accuracy.values())) == 1, accuracy  # main() exits 1 unless the predictions are identical
