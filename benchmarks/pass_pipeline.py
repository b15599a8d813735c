"""Time the -O2 pass pipeline on deep ResNets: cost must grow linearly with depth.

    .venv/bin/python benchmarks/pass_pipeline.py [--repeat 3]

For each network: build the raw graph once (not timed), then time
``run_passes(raw, pipeline(2))`` (the copy and every pass), and print the
per-pass breakdown of the best run plus ms per node. A last table times one
family, the pre-activation bottleneck CIFAR ResNet, at depths 110, 335 and 1001:
flat ms/node there means cost linear in depth. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")


def _inline_preact1001():
    """The 1001-layer pre-activation bottleneck CIFAR ResNet, for checkouts without the example."""
    import resdsl
    from resdsl import nn

    def block(x, planes, stride):
        a = nn.relu(nn.batch_norm(x, name="bn1"))
        y = nn.conv2d(a, planes, 1, bias=False, name="conv1")
        y = nn.conv2d(nn.relu(nn.batch_norm(y, name="bn2")), planes, 3, stride, 1, bias=False, name="conv2")
        y = nn.conv2d(nn.relu(nn.batch_norm(y, name="bn3")), planes * 4, 1, bias=False, name="conv3")
        return y + x

    @resdsl.model
    def preact_resnet1001(num_classes: int = 10, image_size: int = 32, blocks_per_stage: int = 111):
        x = nn.conv2d(nn.input("image", (3, image_size, image_size)), 16, 3, padding=1, bias=False, name="conv1")
        for stage, planes in enumerate((16, 32, 64), start=1):
            for i in range(blocks_per_stage):
                with nn.scope(f"layer{stage}.{i}"):
                    x = block(x, planes, 2 if stage > 1 and i == 0 else 1)
        x = nn.flatten(nn.global_avg_pool(nn.relu(nn.batch_norm(x, name="bn_final"))))
        return nn.output("logits", nn.linear(x, num_classes, name="fc"))

    return preact_resnet1001


def _preact():
    from resdsl.loader import load_models

    path = os.path.join(EXAMPLES, "preact_resnet.py")
    if os.path.exists(path):
        return "preact_resnet", load_models(path)["preact_resnet1001"]
    return "preact_resnet (inline)", _inline_preact1001()


def networks():
    from resdsl.loader import load_models

    resnets = load_models(os.path.join(EXAMPLES, "resnet.py"))
    yield "resnet50", resnets["resnet50"], {"image_size": 224}
    yield "resnet152", resnets["resnet152"], {"image_size": 224}
    label, preact = _preact()
    yield f"{label}1001", preact, {}


def time_pipeline(raw, names, repeat):
    """(best seconds, result of the best run)."""
    from resdsl.passes import run_passes

    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = run_passes(raw, names)
        dt = time.perf_counter() - t0
        if dt < best:
            best, result = dt, res
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per network; the best is reported")
    args = parser.parse_args(argv)

    from resdsl.passes import pipeline

    names = pipeline(2)
    print(f"-O2 pipeline: {', '.join(names)}\n")
    summary = []
    for label, model, kwargs in networks():
        raw = model.build(**kwargs)
        best, result = time_pipeline(raw, names, args.repeat)
        nodes = len(raw)
        summary.append((label, nodes, len(result.graph), best))
        print(f"== {label}: {nodes} nodes raw -> {len(result.graph)} optimised, best of {args.repeat}: {best:.3f} s")
        print(result.table())
        print()
    print(f"{'network':<28} {'nodes':>6} {'after':>6} {'total s':>8} {'ms/node':>8}")
    for label, nodes, after, secs in summary:
        print(f"{label:<28} {nodes:>6} {after:>6} {secs:>8.3f} {secs * 1e3 / nodes:>8.4f}")

    label, preact = _preact()
    print(f"\ndepth scaling, {label}:")
    print(f"{'depth':>6} {'nodes':>6} {'total s':>8} {'ms/node':>8}")
    for blocks in (12, 37, 111):
        raw = preact.build(blocks_per_stage=blocks)
        secs, _ = time_pipeline(raw, names, args.repeat)
        print(f"{9 * blocks + 2:>6} {len(raw):>6} {secs:>8.3f} {secs * 1e3 / len(raw):>8.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
