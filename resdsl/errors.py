"""User-facing errors that point at the model file line that caused them.

Every DSL call records the caller's source location, so an error found later
(in a pass or a backend) can still name the line the user wrote.
"""

from __future__ import annotations

import linecache
import os
import sys
from dataclasses import dataclass

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_PKG_ROOT = os.path.dirname(_PKG_DIR)
# Frames in these files belong to resdsl itself, not to the user's model file.
_INTERNAL_DIRS = tuple(os.path.join(_PKG_ROOT, d) + os.sep for d in ("resdsl", "passes", "backends"))


@dataclass(frozen=True)
class SourceLoc:
    """A file and line in the user's code."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    def source_line(self) -> str:
        return linecache.getline(self.file, self.line).strip()


def _is_internal(filename: str) -> bool:
    path = os.path.abspath(filename)
    if path.startswith(_INTERNAL_DIRS):
        # The block library is written in the public DSL: treat it as user code
        # only when nothing outside resdsl called it (handled by the caller walk).
        return True
    return "contextlib" in os.path.basename(path) or path.endswith("<frozen importlib._bootstrap>")


def caller_loc() -> SourceLoc | None:
    """Return the innermost frame outside resdsl: the line the user wrote."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not _is_internal(name) and not name.startswith("<"):
            return SourceLoc(name, frame.f_lineno)
        frame = frame.f_back
    return None


class ResdslError(Exception):
    """An error in the user's model or command, reported without a traceback.

    ``loc`` names the model file and line; ``hint`` says what to do about it; ``origins``
    are the lines of the nodes a rewrite fused into the offending one, so an error in
    fused code still names every line the user wrote for it.
    """

    def __init__(
        self,
        message: str,
        loc: SourceLoc | None = None,
        hint: str | None = None,
        origins: tuple[SourceLoc, ...] = (),
    ):
        self.message = message
        self.loc = loc
        self.hint = hint
        self.origins = tuple(origins)
        super().__init__(self.render())

    def render(self) -> str:
        text = f"{self.loc}: {self.message}" if self.loc else self.message
        if self.origins:
            text += f" (fused from {', '.join(str(o) for o in self.origins)})"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def render_long(self) -> str:
        """The one-line message followed by the offending source line (and those fused into it)."""
        lines = [self.render()]
        if self.loc is not None:
            src = self.loc.source_line()
            if src:
                lines.append(f"    {self.loc.line} | {src}")
        for origin in self.origins:
            src = origin.source_line()
            if src:
                lines.append(f"    {origin} | {src}")
        return "\n".join(lines)
