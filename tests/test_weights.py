"""Weight files: a torchvision-style resnet18 state_dict, written out independently here, loads by name."""

from __future__ import annotations

import os

import numpy as np
import pytest

import resdsl
from resdsl import weights
from resdsl.numerics import TOLERANCE

RESNET = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "resnet.py")
pytestmark = pytest.mark.skipif(not os.path.exists(RESNET), reason="examples/resnet.py not written")


def torchvision_resnet18_shapes() -> dict[str, tuple]:
    """torchvision.models.resnet18's state_dict names and shapes, num_batches_tracked included."""
    shapes: dict[str, tuple] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(name, c):
        shapes.update(
            {
                f"{name}.weight": (c,),
                f"{name}.bias": (c,),
                f"{name}.running_mean": (c,),
                f"{name}.running_var": (c,),
                f"{name}.num_batches_tracked": (),
            }
        )

    bn("bn1", 64)
    cin = 64
    for layer, planes in enumerate((64, 128, 256, 512), start=1):
        for i in range(2):
            p = f"layer{layer}.{i}"
            shapes[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
            bn(f"{p}.bn1", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            if i == 0 and layer > 1:
                shapes[f"{p}.downsample.0.weight"] = (planes, cin, 1, 1)
                bn(f"{p}.downsample.1", planes)
            cin = planes
    shapes["fc.weight"], shapes["fc.bias"] = (1000, 512), (1000,)
    return shapes


def random_state(seed=0):
    rng = np.random.default_rng(seed)
    state = {}
    for k, shape in torchvision_resnet18_shapes().items():
        if k.endswith("num_batches_tracked"):
            state[k] = np.array(7, np.int64)
        elif k.endswith("running_var"):
            state[k] = rng.uniform(0.5, 2, shape).astype(np.float32)
        else:
            state[k] = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    return state


def model():
    return resdsl.load(RESNET, "resnet18", image_size=32)


def save(state, path):
    if path.endswith(".safetensors"):
        from safetensors.numpy import save_file

        save_file(state, path)
    else:
        np.savez(path, **state)


@pytest.mark.parametrize("ext", [".safetensors", ".npz"])
def test_torchvision_state_dict_loads_by_name(ext, tmp_path):
    state = random_state()
    assert len(state) == 122  # the published count, num_batches_tracked included
    path = str(tmp_path / f"resnet18{ext}")
    save(state, path)
    g = model()
    default = g.copy()
    assert g.load_weights_file(path) == []
    for k, v in g.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    assert set(g.state_dict()) == {k for k in state if not k.endswith("num_batches_tracked")}
    direct = model()
    direct.load_weights(state)
    feeds = resdsl.random_inputs(g, batch=2, seed=3)
    got = resdsl.interpret(g, feeds)["logits"]
    assert resdsl.max_rel_error(got, resdsl.interpret(direct, feeds)["logits"]) < TOLERANCE
    assert resdsl.max_rel_error(got, resdsl.interpret(default, feeds)["logits"]) > 0.1


def test_every_problem_is_reported_at_once(tmp_path):
    state = random_state()
    del state["layer1.0.conv1.weight"]
    state["layer9.0.conv1.weight"] = np.zeros((1,), np.float32)
    state["fc.weight"] = np.zeros((10, 512), np.float32)
    path = str(tmp_path / "bad.npz")
    save(state, path)
    with pytest.raises(resdsl.ResdslError) as e:
        weights.load_weights_file(model(), path)
    msg = str(e.value)
    assert "missing: layer1.0.conv1.weight" in msg and "unexpected: layer9.0.conv1.weight" in msg
    assert "fc.weight: expected (1000, 512), got (10, 512)" in msg


def test_unreadable_files_are_clear_errors(tmp_path):
    g = model()
    with pytest.raises(resdsl.ResdslError, match="does not exist"):
        weights.load_weights_file(g, str(tmp_path / "none.safetensors"))
    bad = tmp_path / "w.h5"
    bad.write_bytes(b"x")
    with pytest.raises(resdsl.ResdslError, match="unknown weights format"):
        weights.load_weights_file(g, str(bad))
    corrupt = tmp_path / "w.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(resdsl.ResdslError, match="cannot read weights file"):
        weights.load_weights_file(g, str(corrupt))
    pt = tmp_path / "w.pt"
    pt.write_bytes(b"x")
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(resdsl.ResdslError, match="needs PyTorch"):
            weights.load_weights_file(g, str(pt))


@pytest.mark.parametrize("ext", [".safetensors", ".npz"])
def test_export_round_trips_through_the_cli_and_compile(ext, tmp_path):
    from resdsl.cli import main
    from resdsl.driver import CompileRequest, build_graph

    src = str(tmp_path / f"src{ext}")
    save(random_state(1), src)
    out = str(tmp_path / f"out{ext}")
    args = ["weights", "export", RESNET, "--model", "resnet18", "--arg", "image_size=32", "--weights", src, "-o", out]
    assert main(args) == 0
    loaded = weights.read_weights_file(out)
    assert set(loaded) == set(model().state_dict())
    graph, _ = build_graph(CompileRequest(RESNET, "resnet18", {"image_size": 32}, level=0, weights=out))
    for k, v in loaded.items():
        np.testing.assert_array_equal(graph.parameters[k], v)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_pytorch_state_dict_loads_and_refuses_pickled_code(tmp_path):
    torch = pytest.importorskip("torch")
    state = random_state(2)
    path = str(tmp_path / "resnet18.pt")
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, path)
    g = model()
    g.load_weights_file(path)
    for k, v in g.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    evil = str(tmp_path / "evil.pt")
    torch.save({"fc.weight": torch.zeros(2), "payload": object()}, evil)  # weights_only refuses arbitrary objects
    with pytest.raises(resdsl.ResdslError):
        weights.load_weights_file(model(), evil)


TINY = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "tiny.py")


def _tiny_state():
    from resdsl.driver import CompileRequest, build_graph

    graph, _ = build_graph(CompileRequest(TINY, level=0))
    return graph, {k: v.copy() for k, v in graph.state_dict().items()}


def _save_npz(path, state):
    np.savez(path, **state)
    return str(path)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_dtypes_are_converted_with_one_warning(dtype, tmp_path, capsys):
    graph, state = _tiny_state()
    state = {k: v.astype(dtype) for k, v in state.items()}
    path = _save_npz(tmp_path / "w.npz", state)
    got = weights.read_weights_file(path)
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and f"converted {len(state)} parameters to float32 ({len(state)} {np.dtype(dtype).name})" in err[0]
    )
    assert all(v.dtype == np.float32 for v in got.values())
    assert all(np.array_equal(got[k], state[k].astype(np.float32)) for k in state)
    weights.load_weights_file(graph, path)
    assert np.array_equal(graph.parameters["fc.weight"], state["fc.weight"].astype(np.float32))


def test_bfloat16_safetensors_is_converted(tmp_path, capsys):
    import ml_dtypes
    from safetensors.numpy import save_file

    _, state = _tiny_state()
    bf = {k: v.astype(ml_dtypes.bfloat16) for k, v in state.items()}
    save_file(bf, str(tmp_path / "w.safetensors"))
    got = weights.read_weights_file(str(tmp_path / "w.safetensors"))
    assert "bfloat16" in capsys.readouterr().err
    assert np.array_equal(got["fc.weight"], bf["fc.weight"].astype(np.float32))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex64])
def test_integer_and_other_dtypes_are_refused_naming_the_parameter(dtype, tmp_path):
    _, state = _tiny_state()
    state["layer1.0.conv2.weight"] = state["layer1.0.conv2.weight"].astype(dtype)
    with pytest.raises(resdsl.ResdslError, match=r"parameter 'layer1.0.conv2.weight' has dtype .*, not a float"):
        weights.read_weights_file(_save_npz(tmp_path / "w.npz", state))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_weights_are_refused_naming_the_parameter(bad, tmp_path):
    _, state = _tiny_state()
    state["bn1.running_var"][3] = bad
    with pytest.raises(resdsl.ResdslError, match=r"parameter 'bn1.running_var' holds 1 NaN or inf value"):
        weights.read_weights_file(_save_npz(tmp_path / "w.npz", state))


def test_float64_overflowing_float32_is_refused(tmp_path):
    _, state = _tiny_state()
    state = {k: v.astype(np.float64) for k, v in state.items()}
    state["fc.bias"][0] = 1e300
    with pytest.raises(resdsl.ResdslError, match=r"'fc.bias' holds 1 NaN or inf value \(in float32; it was float64\)"):
        weights.read_weights_file(_save_npz(tmp_path / "w.npz", state))


def test_integer_batch_counters_pass(tmp_path, capsys):
    graph, state = _tiny_state()
    state["bn1.num_batches_tracked"] = np.array(7, np.int64)
    weights.load_weights_file(graph, _save_npz(tmp_path / "w.npz", state))
    assert capsys.readouterr().err == ""
