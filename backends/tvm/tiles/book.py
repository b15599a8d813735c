"""Tile books: measured register tiles for resdsl's CPU kernels, (the search that fills them is ``search``).

``rules.kernel.choose_tile`` picks a kernel's register tile from a rule of thumb
(fill the accumulator registers, rows first). The rule is right for most
kernels, not all: which of 14x2, 7x4 or 4x4 is fastest, and which loop order keeps
the operands in cache, depends on the CPU and the shape. A *tile book* is the
measured answer, per kernel shape (``MacShape.key()``) and per CPU (LLVM's
``mcpu``).

Why our own search rather than MetaSchedule's: MetaSchedule searches its own
space, does not start from resdsl's schedules, and on 2 cores one batch of its
builds takes ~45 s; resdsl's space is a dozen tiles a kernel, each compiled in
well under a second in this process and timed with ``time_evaluator``. Every
kernel of resnet50 is searched in minutes, so tile books for the zoo ship with
resdsl (``resdsl/tophub/llvm-<mcpu>.json``, like TVM's TopHub) and are applied
automatically: users get measured tiles without tuning.

A record is kept only when its tile beat the rule's tile by ``MIN_GAIN`` when
the two were measured again, interleaved: a book never makes a kernel slower
than the untuned compile, up to the measurement's noise.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from resdsl.atomic import atomic_write
from resdsl.errors import ResdslError

from ..rules.kernel import Tile

FORMAT = "resdsl-tiles/1"


@dataclass
class TileRecord:
    tile: Tile
    ms: float  # the tile's median time when it was chosen
    default_ms: float  # the rule's tile, measured alongside
    kernel: str  # the kernel's name in the model it was tuned on (for people, not lookup)


@dataclass
class TileBook:
    mcpu: str
    lanes: int
    records: dict[str, TileRecord] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)

    def tiles(self) -> dict[str, Tile]:
        return {key: r.tile for key, r in self.records.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "mcpu": self.mcpu,
            "lanes": self.lanes,
            "models": self.models,
            "records": {
                key: {**asdict(r.tile), "ms": round(r.ms, 6), "default_ms": round(r.default_ms, 6), "kernel": r.kernel}
                for key, r in sorted(self.records.items())
            },
        }


def load_book(path: str) -> TileBook:
    """Read a tile book, or a ResdslError naming the file and what to do."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ResdslError(f"cannot read tile book {path}: {e.strerror}", hint="write one with 'resdsl tune'") from e
    except json.JSONDecodeError as e:
        raise ResdslError(f"{path} is not a tile book: {e}", hint="write one with 'resdsl tune'") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ResdslError(f"{path} is not a tile book (format {FORMAT!r})", hint="write one with 'resdsl tune'")
    try:
        records = {
            key: TileRecord(
                Tile(int(r["rows"]), int(r["reg"]), int(r["vec"]), bool(r["channels_outer"])),
                float(r["ms"]),
                float(r["default_ms"]),
                str(r.get("kernel", "")),
            )
            for key, r in data["records"].items()
        }
        return TileBook(str(data["mcpu"]), int(data["lanes"]), records, list(data.get("models", [])))
    except (KeyError, TypeError, ValueError) as e:
        raise ResdslError(f"tile book {path} is damaged ({e})", hint="write it again with 'resdsl tune'") from e


def save_book(book: TileBook, path: str) -> None:
    atomic_write(path, json.dumps(book.to_json(), indent=1) + "\n")


def shipped_book_path(mcpu: str) -> str:
    """Where resdsl ships the tile book for ``mcpu`` (the file may not exist)."""
    import resdsl.tophub

    return os.path.join(os.path.dirname(resdsl.tophub.__file__), f"llvm-{mcpu}.json")


def books_for(mcpu: str, lanes: int, tiles: str | None, tophub: bool = True) -> list[tuple[str, TileBook]]:
    """The tile books a compile for ``mcpu`` applies, later ones overriding earlier ones: the
    shipped book for this CPU (unless ``tophub`` is off), then the user's ``--db`` book ``tiles``."""
    books = []
    shipped = shipped_book_path(mcpu)
    if tophub and os.path.exists(shipped):
        books.append((f"resdsl/tophub/{os.path.basename(shipped)}", load_book(shipped)))
    if tiles is not None:
        book = load_book(tiles)
        if book.lanes != lanes:
            raise ResdslError(
                f"tile book {tiles} was tuned for {book.mcpu} ({book.lanes} float lanes), not this target's {lanes}",
                hint="tune again for this CPU with 'resdsl tune'",
            )
        books.append((tiles, book))
    return books


def merged_tiles(books: list[tuple[str, TileBook]]) -> dict[str, Tile]:
    tiles: dict[str, Tile] = {}
    for _, book in books:
        tiles.update(book.tiles())
    return tiles
