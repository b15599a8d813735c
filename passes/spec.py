"""Pipelines as text: ``shortcuts{mode=A},dce,fold_batchnorm`` -> configured pass objects.

Passes are separated by commas; a pass's options follow its name in braces as
``key=value``, separated by spaces or commas. Values are read as the field's type
(text, number or yes/no). Every mistake is one ResdslError that names the bad pass or
option and lists the valid ones. Legacy flags (``PassOptions``) fill the options they
map to; an option written in the text wins over its flag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from resdsl.errors import ResdslError

from .base import PASSES, Pass, PassOptions


def split_pipeline(text: str) -> list[tuple[str, dict[str, str]]]:
    """``[(pass name, {option: value text})]`` for a pipeline text."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise ResdslError(f"pipeline {text!r}: '}}' without '{{'")
        elif ch == "," and depth == 0:
            if text[start:i].strip():
                items.append(_split_item(text[start:i].strip(), text))
            start = i + 1
    if depth:
        raise ResdslError(f"pipeline {text!r}: '{{' without '}}'")
    return items


def _split_item(item: str, text: str) -> tuple[str, dict[str, str]]:
    name, brace, rest = item.partition("{")
    name = name.strip()
    if not brace:
        return name, {}
    if not rest.endswith("}"):
        raise ResdslError(f"pipeline {text!r}: text after the options of {name}")
    given: dict[str, str] = {}
    for pair in rest[:-1].replace(",", " ").split():
        key, eq, value = pair.partition("=")
        if not eq or not key or not value:
            raise ResdslError(f"pipeline {text!r}: {name} option {pair!r} is not key=value")
        if key in given:
            raise ResdslError(f"pipeline {text!r}: {name} option {key} given twice")
        given[key] = value
    return name, given


def make_pass(name: str, given: dict[str, str], flags: PassOptions | None = None) -> Pass:
    """The pass ``name`` with options from ``given`` (text), else from the legacy ``flags``."""
    if name not in PASSES:
        raise ResdslError(f"unknown pass {name}", hint=f"known passes: {', '.join(PASSES)}")
    fields = {f.name: f for f in PASSES[name].options()}
    values = {}
    for f in fields.values():
        flag = f.metadata.get("flag")
        if flags is not None and flag and getattr(flags, flag, None) is not None:
            values[f.name] = getattr(flags, flag)
    for key, text in given.items():
        if key not in fields:
            valid = f"its options: {', '.join(fields)}" if fields else f"{name} has no options"
            raise ResdslError(f"pass {name} has no option {key!r}", hint=valid)
        values[key] = _convert(name, fields[key], text)
    return PASSES[name].cls(**values)


def _convert(name: str, f: dataclasses.Field, text: str):
    choices = f.metadata.get("choices") or ()
    if choices:
        for choice in choices:
            if text.lower() == choice.lower():
                return choice
        raise ResdslError(f"{name}{{{f.name}={text}}}: {f.name} must be one of {', '.join(choices)}")
    kind = str(f.type)
    try:
        if "bool" in kind:
            if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "yes", "1")
        if "int" in kind:
            return int(text)
        if "float" in kind:
            return float(text)
    except ValueError:
        raise ResdslError(f"{name}{{{f.name}={text}}}: {f.name} takes a {kind}") from None
    return text


def resolve(passes: str | Sequence[str | Pass], flags: PassOptions | None = None) -> list[Pass]:
    """Pass objects for a pipeline text, or a list of names, texts and pass objects."""
    items = [passes] if isinstance(passes, str) else list(passes)
    out: list[Pass] = []
    for item in items:
        if isinstance(item, Pass):
            out.append(item)
        else:
            out.extend(make_pass(name, given, flags) for name, given in split_pipeline(item))
    return out
