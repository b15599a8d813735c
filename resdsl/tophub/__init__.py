"""The tile books resdsl ships (``llvm-<mcpu>.json``): data only, read by ``resdsl.backends.tvm.tiles.book``."""
