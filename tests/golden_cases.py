"""The models whose IR after each -O2 pass is checked in under tests/golden/ (see test_golden.py)."""

from __future__ import annotations

import os

from resdsl.driver import CompileRequest, build_graph

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, os.pardir, "examples")
GOLDEN = os.path.join(HERE, "golden")

# name -> (model file, model, arguments)
CASES = {
    "resnet20": ("cifar_resnet.py", "resnet20", {}),
    "resnet18_32": ("resnet.py", "resnet18", {"image_size": 32}),
}


def dump(case: str, directory: str) -> list[str]:
    """Write ``NNN_<pass>.txt`` after each -O2 pass of ``case`` into ``directory``; returns the file names."""
    path, model, arguments = CASES[case]
    req = CompileRequest(
        path=os.path.join(EXAMPLES, path),
        model=model,
        arguments=arguments,
        level=2,
        verify=True,
        dump_after="all",
        dump_dir=directory,
    )
    build_graph(req)
    names = sorted(f for f in os.listdir(directory) if f.endswith(".dot"))
    for f in names:  # the DOT files are drawings of the same graphs: only the text is the contract
        os.remove(os.path.join(directory, f))
    return sorted(f for f in os.listdir(directory) if f.endswith(".txt"))
