"""Train ``examples/cifar_resnet.py``'s resnet20(num_classes=10, image_size=16) on the digits data set
and write ``tests/data/digits_resnet20.safetensors`` (float32): the trained network the int8
accuracy test measures. Run once by a developer (needs PyTorch), never by the tests:

    .venv/bin/python scripts/train_digits_weights.py [--data tests/data/digits.npz] [--epochs 40]

Why the network is built from the resdsl graph and not written twice: the PyTorch module below
executes the canonical (-O0) graph op by op with its parameters under resdsl's names, so the
checkpoint fits the model by construction (batch norm trains in batch statistics and keeps
running ones, as ``torch.nn.BatchNorm2d`` does).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F

import resdsl
from resdsl.ir import BUFFER, Graph

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def model_input(x: np.ndarray) -> np.ndarray:
    """The digits' (n, 8, 8) raw 0..16 pixels as the model's (n, 3, 16, 16) float32 input."""
    up = np.repeat(np.repeat(x / 16, 2, 1), 2, 2)
    return np.repeat(((up - 0.3) / 0.4)[:, None], 3, axis=1).astype(np.float32)


class GraphModule(torch.nn.Module):
    """A resdsl graph run by PyTorch ops, its parameters (weights) and buffers under resdsl's names."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph
        self.order = graph.topo_order()
        self.values = torch.nn.ParameterDict()
        self.stats: dict[str, torch.Tensor] = {}
        for name, value in graph.parameters.items():
            key = name.replace(".", "__")
            if graph.param_kind[name] == BUFFER:
                self.register_buffer(key, torch.tensor(value))
                self.stats[name] = key
            else:
                self.values[key] = torch.nn.Parameter(torch.tensor(value))

    def param(self, name: str) -> torch.Tensor:
        key = name.replace(".", "__")
        return getattr(self, key) if name in self.stats else self.values[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.graph
        v: dict[int, torch.Tensor] = {g.inputs[0]: x}
        for nid in self.order:
            n = g.node(nid)
            if n.op == "input":
                continue
            if n.op == "param":
                v[nid] = self.param(n.attrs["name"])
                continue
            v[nid] = self._op(n, [v[a] for a in g.args(nid)])
        return v[g.outputs[0][1]]

    def _op(self, n, a: list[torch.Tensor]) -> torch.Tensor:
        at = n.attrs
        if n.op == "conv2d":
            return F.conv2d(
                *a, stride=at["stride"], padding=at["padding"], dilation=at["dilation"], groups=at["groups"]
            )
        if n.op == "batch_norm":
            x, w, b, mean, var = a
            return F.batch_norm(x, mean, var, w, b, self.training, 0.1, at["eps"])
        if n.op == "relu":
            return F.relu(a[0])
        if n.op == "add":
            return a[0] + a[1]
        if n.op == "avg_pool2d":
            return F.avg_pool2d(a[0], at["kernel"], at["stride"] or at["kernel"], at["padding"])
        if n.op == "max_pool2d":
            return F.max_pool2d(a[0], at["kernel"], at["stride"] or at["kernel"], at["padding"])
        if n.op == "pad":
            pads = list(at["pads"])
            r = len(pads) // 2
            return F.pad(a[0], [p for i in reversed(range(r)) for p in (pads[i], pads[i + r])])
        if n.op == "global_avg_pool":
            return a[0].mean(dim=(2, 3), keepdim=True)
        if n.op == "flatten":
            return torch.flatten(a[0], at["axis"])
        if n.op == "linear":
            return F.linear(*a)
        raise NotImplementedError(f"{n.op} (extend GraphModule._op)")

    def state(self) -> dict[str, np.ndarray]:
        return {name: self.param(name).detach().numpy().astype(np.float32) for name in self.graph.state_dict()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.path.join(ROOT, "tests", "data", "digits.npz"))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("-o", "--output", default=os.path.join(ROOT, "tests", "data", "digits_resnet20.safetensors"))
    args = p.parse_args()
    torch.manual_seed(0)
    data = np.load(args.data)
    graph = resdsl.load(os.path.join(ROOT, "examples", "cifar_resnet.py"), "resnet20", num_classes=10, image_size=16)
    net = GraphModule(graph)
    xs, ys = torch.tensor(model_input(data["train_x"])), torch.tensor(data["train_y"])
    xt, yt = torch.tensor(model_input(data["test_x"])), torch.tensor(data["test_y"])
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = args.epochs * ((len(xs) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=steps)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(xs), generator=gen)
        for i in range(0, len(xs), 64):
            idx = order[i : i + 64]
            x = xs[idx]
            shift = torch.randint(-2, 3, (2,), generator=gen).tolist()  # small translations
            x = torch.roll(x, shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(net(x), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            acc = (net(xt).argmax(1) == yt).float().mean().item()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, test accuracy {acc:.2%}", flush=True)
    from safetensors.numpy import save_file

    state = net.state()
    graph.load_weights(state)  # the checkpoint fits the resdsl model, strictly
    want = resdsl.interpret(graph, {"image": model_input(data["test_x"])})["logits"]
    acc_resdsl = float(np.mean(want.argmax(1) == data["test_y"]))
    print(f"resdsl interpreter test accuracy {acc_resdsl:.2%}")
    save_file(state, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
