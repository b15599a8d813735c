"""Tile books: measured register tiles for the CPU kernel rule (``book``), and the search that
fills them (``search``)."""
