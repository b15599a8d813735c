"""Static int8 quantization, driver level: calibration, the qparams file, the accuracy report.

The graph rewrite itself is the ``quantize`` pass (``passes/quantize.py``); this package runs the
interpreter over calibration inputs to give it ranges, so it sits with the driver.
"""

from __future__ import annotations

from .calibrate import (
    METHODS,
    Report,
    apply_qparams,
    calibrate,
    float_graph,
    load_calibration,
    measure,
    model_hash,
    output_step,
    read_qparams,
    sqnr_db,
    write_qparams,
)

__all__ = [
    "METHODS",
    "Report",
    "apply_qparams",
    "calibrate",
    "float_graph",
    "load_calibration",
    "measure",
    "model_hash",
    "output_step",
    "read_qparams",
    "sqnr_db",
    "write_qparams",
]
