"""The ONNX backend: ``emit`` writes ``.onnx`` (``onnx`` and ``onnx-ort``), ``runner`` runs it in
ONNX Runtime. The runner does not import the emitter."""
