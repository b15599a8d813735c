"""Loading model files: run the user's Python and collect its ``@resdsl.model`` functions."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import sys
import traceback
from typing import Any

from .errors import ResdslError, SourceLoc
from .ir import Graph
from .model import Model


def load_models(path: str) -> dict[str, Model]:
    """Execute a model file and return its models by name, in definition order."""
    if not os.path.isfile(path):
        raise ResdslError(f"model file {path!r} does not exist", hint="give the path to a .py model file")
    path = os.path.abspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
        compile(source, path, "exec")
    except SyntaxError as e:
        raise ResdslError(f"syntax error: {e.msg}", SourceLoc(path, e.lineno or 1)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ResdslError(f"cannot read model file {path!r}: {e}") from None
    modname = "resdsl_model_" + hashlib.sha1(path.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except ResdslError:
        raise
    except Exception as e:  # the user's module failed at import time
        loc = _innermost_in(path, e)
        raise ResdslError(f"{type(e).__name__} while importing the model file: {e}", loc) from e
    models = {}
    for value in vars(module).values():
        if isinstance(value, Model) and value.loc and value.loc.file == path:
            models[value.name] = value
    return dict(sorted(models.items(), key=lambda kv: kv[1].loc.line))


def _innermost_in(path: str, e: BaseException) -> SourceLoc | None:
    frames = [f for f in traceback.extract_tb(e.__traceback__) if os.path.abspath(f.filename) == path]
    return SourceLoc(path, frames[-1].lineno) if frames else SourceLoc(path, 1)


def pick_model(path: str, name: str | None = None) -> Model:
    models = load_models(path)
    if name is not None:
        if name not in models:
            have = ", ".join(models) or "none"
            raise ResdslError(f"{path} has no model {name!r} (models: {have})", hint="pick one with --model NAME")
        return models[name]
    if not models:
        raise ResdslError(f"{path} defines no @resdsl.model function", hint="decorate a model function")
    if len(models) > 1:
        raise ResdslError(f"{path} defines several models ({', '.join(models)})", hint="pick one with --model NAME")
    return next(iter(models.values()))


def build_model(model: Model, **kwargs: Any) -> Graph:
    """Build a model, turning errors raised by the user's own code into ResdslErrors at its line."""
    try:
        return model.build(**kwargs)
    except ResdslError:
        raise
    except Exception as e:
        loc = _innermost_in(model.loc.file, e)
        raise ResdslError(f"{type(e).__name__} while building model {model.name!r}: {e}", loc) from e


def load_graph(path: str, name: str | None = None, arguments: dict[str, Any] | None = None) -> tuple[Graph, str, str]:
    """The raw graph of a model file, its model name and default shortcut option.

    A path ending in ``.onnx`` is imported (``resdsl.onnx_import``); it holds one model and takes no
    arguments, so ``--model`` (other than the file's own name) and ``--arg`` are refused for it."""
    from .onnx_import import import_onnx, is_onnx, model_name

    if is_onnx(path):
        if name is not None and name != model_name(path):
            raise ResdslError(
                f"--model {name!r} does not apply to an ONNX file: {path} holds one model", hint="drop --model"
            )
        if arguments:
            raise ResdslError(
                f"--arg {', '.join(arguments)} does not apply to an ONNX file: its sizes are fixed", hint="drop --arg"
            )
        graph = import_onnx(path)
        return graph, graph.name, "B"
    model = pick_model(path, name)
    return build_model(model, **(arguments or {})), model.name, model.shortcut


def parse_arg(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line; VALUE is a Python literal when it parses as one."""
    if "=" not in text:
        raise ResdslError(f"--arg {text!r} must look like KEY=VALUE")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value
