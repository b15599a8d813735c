"""The TVM backend (targets ``llvm`` and ``cuda``), in layers whose imports point down.

Running an artifact (``runner``) needs only ``artifact`` (the sidecar format), ``target``
(CPU flags, threads) and ``errors``. Compiling (``build``) adds ``lower`` (IR -> Relax),
``pipeline`` (Relax passes + DLight rules), the rules themselves (``rules/``, one a
module), ``winograd`` and the tile books (``tiles/``); tuning (``tune``, ``tiles.search``)
sits on top of the pipeline.
"""
