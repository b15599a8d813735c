"""TVM's errors as one line for a ResdslError (the compiler and the runner both report them)."""

from __future__ import annotations


def tvm_error_line(e: BaseException) -> str:
    """The message of a TVM error without its C++ backtrace: its last meaningful line."""
    lines = [ln for ln in str(e).splitlines() if ln.strip() and not ln.startswith(("  File", "Traceback"))]
    return lines[-1].strip() if lines else type(e).__name__
