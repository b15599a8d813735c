"""The one validation helper of the DSL: every argument checked at the call, at the user's line.

Each check raises a ``ResdslError`` naming the DSL function, the argument and what it
must be, so a wrong value never travels on to a shape rule or a backend.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ResdslError, caller_loc


def fail(fn: str, message: str, hint: str | None = None) -> ResdslError:
    return ResdslError(f"nn.{fn}: {message}", caller_loc(), hint)


def integer(fn: str, arg: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(fn, f"{arg}={value!r} must be an int, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise fail(fn, f"{arg}={value} must be at least {minimum}")
    return value


def number(fn: str, arg: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(fn, f"{arg}={value!r} must be a number, not {type(value).__name__}")
    return float(value)


def pair(fn: str, arg: str, value: Any, minimum: int = 0) -> tuple[int, int]:
    """An int or a pair of ints, each at least ``minimum``."""
    items = (value, value) if not isinstance(value, tuple | list) else tuple(value)
    if len(items) != 2:
        raise fail(fn, f"{arg}={value!r} must be an int or a pair of ints")
    return tuple(integer(fn, arg, v, minimum) for v in items)  # type: ignore[return-value]


def choice(fn: str, arg: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise fail(fn, f"{arg}={value!r} must be one of {', '.join(map(repr, choices))}")
    return value


def axis(fn: str, arg: str, value: Any, rank: int) -> int:
    """A Python-style axis (negative counts from the end), returned non-negative."""
    integer(fn, arg, value)
    if not -rank <= value < rank:
        raise fail(fn, f"{arg}={value} is out of range for a rank-{rank} tensor (valid: {-rank}..{rank - 1})")
    return value % rank


def name(fn: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or any(not part for part in value.split(".")):
        raise fail(fn, f"name={value!r} must be a non-empty string", "name layers like 'conv1' or 'layer1.0.conv1'")
    return value


def alias(fn: str, kwargs: dict, canonical: str, spellings: Sequence[str], default: Any) -> Any:
    """Accept PyTorch's spelling of an argument (``dim=`` for ``axis=``): at most one of them given."""
    given = [k for k in (canonical, *spellings) if k in kwargs]
    if len(given) > 1:
        raise fail(fn, f"give one of {', '.join(given)}=, not both (they mean the same)")
    return kwargs.pop(given[0]) if given else default


def dsl(fn: Callable) -> Callable:
    """Check the call against the signature: a positional argument past the layer-defining ones
    names the keyword it should have been, an unknown keyword names the closest known ones."""
    sig = inspect.signature(fn)
    positional = [p.name for p in sig.parameters.values() if p.kind == p.POSITIONAL_OR_KEYWORD and p.name != "self"]
    offset = 1 if "self" in sig.parameters else 0  # a layer object's __init__
    keywords = [p.name for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            sig.bind(*args, **kwargs)
        except TypeError as e:
            owner = fn.__qualname__.split(".")[0] if offset else fn.__name__
            raise _signature_error(owner, e, args[offset:], kwargs, positional, keywords) from None
        return fn(*args, **kwargs)

    return wrapper


def _signature_error(fn, e, args, kwargs, positional, keywords) -> ResdslError:
    if len(args) > len(positional):
        extra = len(args) - len(positional)
        named = ", ".join(f"{k}=" for k in keywords[:extra] or keywords[:1])
        return fail(
            fn,
            f"takes {len(positional)} positional argument{'s' if len(positional) != 1 else ''} "
            f"({', '.join(positional)}), got {len(args)}",
            f"pass the others by keyword ({named} ...); resdsl infers input sizes from the tensor",
        )
    unknown = [k for k in kwargs if k not in positional and k not in keywords]
    if unknown:
        known = positional + keywords
        close = difflib.get_close_matches(unknown[0], known, n=3)
        hint = f"did you mean {', '.join(c + '=' for c in close)}?" if close else f"it takes {', '.join(known)}"
        return fail(fn, f"unexpected keyword argument {unknown[0]!r}", hint)
    return fail(
        fn, str(e).replace(f"{fn}() ", "").replace("__init__() ", ""), f"it takes {', '.join(positional + keywords)}"
    )
