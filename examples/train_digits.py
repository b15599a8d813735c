"""Train a resdsl model in PyTorch on real data, then compile the trained weights with resdsl.

The complete loop, with the same commands a user types:

1. ``resdsl export examples/cifar_resnet.py --model resnet20 --arg num_classes=10 --arg image_size=16
   --target torch -o resnet20_torch.py``: the DSL model as a standalone nn.Module;
2. train it in PyTorch on scikit-learn's 8x8 digits (``tests/data/digits.npz``, upsampled to 16x16),
   and ``torch.save(model.state_dict(), "trained.pt")``;
3. ``resdsl compile ... --weights trained.pt --target onnx`` and ``--target llvm``;
4. held-out accuracy from PyTorch, ONNX Runtime and TVM: equal, as the predictions are.

Run: ``python examples/train_digits.py`` (about a minute on 2 CPU threads). This file defines no
model; it is a script, so it imports torch only when run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_FILE = os.path.join(HERE, "cifar_resnet.py")
MODEL_ARGS = ["--model", "resnet20", "--arg", "num_classes=10", "--arg", "image_size=16"]


def resdsl(*argv: str) -> None:
    """One resdsl command, run as the CLI runs it (its output printed); a failure stops the script."""
    from resdsl.cli import main

    print("$ resdsl " + " ".join(_short(a) for a in argv), flush=True)
    code = main(list(argv))
    if code:
        sys.exit(code)


def _short(path: str) -> str:
    """A path as a user would type it: relative to here when below here."""
    rel = os.path.relpath(path) if os.path.isabs(path) else path
    return rel if os.path.exists(path) and not rel.startswith("..") else path


def digits():
    sys.path.insert(0, os.path.join(HERE, os.pardir, "tests", "data"))
    import digits as data

    arrays = data.load()
    return {split: (data.images(arrays[f"{split}_x"]), arrays[f"{split}_y"]) for split in data.SPLITS}


def train(model, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> None:
    """SGD with Nesterov momentum and a one-cycle schedule; one-pixel random shifts as augmentation."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    batch = 64
    steps = epochs * ((len(xs) + batch - 1) // batch)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps, pct_start=0.25)
    model.train()
    for epoch in range(epochs):
        t0, total, correct, seen = time.perf_counter(), 0.0, 0, 0
        for idx in torch.randperm(len(xs)).split(batch):
            xb, yb = xs[idx], ys[idx]
            dy, dx = (int(v) for v in torch.randint(-1, 2, (2,)))
            xb = torch.roll(F.pad(xb, (1, 1, 1, 1), mode="replicate"), (dy, dx), (2, 3))[:, :, 1:-1, 1:-1]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        print(
            f"epoch {epoch + 1}/{epochs}: loss {total / seen:.4f}, train accuracy {correct / seen:.2%} "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )


def evaluate(workdir: str, model, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Logits on the test split from PyTorch (eval mode) and from the two compiled artifacts."""
    import torch
    from resdsl.backends import open_artifact

    model.eval()
    with torch.no_grad():
        out = {"PyTorch": model(torch.from_numpy(x)).numpy()}
    for label, artifact in (("ONNX Runtime", "digits.onnx"), ("TVM llvm", "digits.so")):
        runner = open_artifact(os.path.join(workdir, artifact), "cpu")
        out[label] = runner.run({"image": x})["logits"]
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=6, help="training epochs (default 6: about a minute)")
    p.add_argument("--limit", type=int, help="train on the first LIMIT training images only (a quick run)")
    p.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", help="where the exported module, trained.pt and artifacts go (default: a temp dir)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    workdir = args.workdir or tempfile.mkdtemp(prefix="train_digits_")
    os.makedirs(workdir, exist_ok=True)
    exported = os.path.join(workdir, "resnet20_torch.py")
    trained = os.path.join(workdir, "trained.pt")

    resdsl("export", MODEL_FILE, *MODEL_ARGS, "--target", "torch", "-o", exported)
    spec = importlib.util.spec_from_file_location("resnet20_torch", exported)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Model()

    data = digits()
    x, y = data["train"]
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    t0 = time.perf_counter()
    train(model, x, y, args.epochs, args.seed)
    print(f"trained on {len(x)} images in {time.perf_counter() - t0:.1f} s")
    torch.save(model.state_dict(), trained)
    print(f"saved {_short(trained)}")

    for target, artifact in (("onnx", "digits.onnx"), ("llvm", "digits.so")):
        out = os.path.join(workdir, artifact)
        resdsl("compile", MODEL_FILE, *MODEL_ARGS, "--weights", trained, "--target", target, "-o", out)

    test_x, test_y = data["test"]
    logits = evaluate(workdir, model, test_x, test_y)
    reference = logits["PyTorch"]
    accuracy = {}
    for label, values in logits.items():
        accuracy[label] = float((values.argmax(1) == test_y).mean())
        err = float(np.abs(values - reference).max() / np.abs(reference).max())
        print(
            f"{label:>12}: test accuracy {accuracy[label]:.2%} ({len(test_y)} held-out digits), rel. error vs PyTorch {err:.1e}"
        )
    same = all(np.array_equal(v.argmax(1), reference.argmax(1)) for v in logits.values())
    print("predictions identical across PyTorch, ONNX Runtime and TVM" if same else "PREDICTIONS DIFFER")
    if not same:
        raise SystemExit(1)
    return accuracy


if __name__ == "__main__":
    main()
