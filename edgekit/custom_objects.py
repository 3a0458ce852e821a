"""``--custom-objects``: the user's own Keras classes and functions, so models that use them load.

``SPEC`` is ``path/to/module.py`` (every public class and function the module
defines, or its ``CUSTOM_OBJECTS`` dict when it has one) or ``module:attr``
(``module`` a file path or an importable dotted name; ``attr`` a dict of
objects, or one class or function). The module is the user's code and runs as
such; loading the model itself keeps Keras' ``safe_mode`` (a Lambda layer's
bytecode is still refused).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from pathlib import Path
from typing import Any

from edgekit.errors import InputError


def _import(module: str, spec_text: str):
    path = Path(module)
    try:
        if module.endswith(".py") or path.is_file():
            if not path.is_file():
                raise InputError(f"--custom-objects {spec_text}: {path}: file not found")
            spec = importlib.util.spec_from_file_location(f"edgekit_custom_{path.stem}", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
        return importlib.import_module(module)
    except InputError:
        raise
    except Exception as exc:  # the user's module may raise anything while importing
        raise InputError(f"--custom-objects {spec_text}: cannot import {module} ({type(exc).__name__}: {str(exc)[:200]})") from None


def load_custom_objects(spec_text: str) -> dict[str, Any]:
    """The ``name -> object`` mapping ``spec_text`` names (see the module docstring); :class:`InputError` when it cannot."""
    module, sep, attr = spec_text.rpartition(":") if ":" in spec_text.split("/")[-1] else (spec_text, "", "")
    mod = _import(module, spec_text)
    if sep:
        if not hasattr(mod, attr):
            raise InputError(f"--custom-objects {spec_text}: {module} has no attribute {attr!r}")
        obj = getattr(mod, attr)
        if isinstance(obj, dict):
            return dict(obj)
        return {getattr(obj, "__name__", attr): obj}
    if isinstance(getattr(mod, "CUSTOM_OBJECTS", None), dict):
        return dict(mod.CUSTOM_OBJECTS)
    found = {name: obj for name, obj in vars(mod).items()
             if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
             and getattr(obj, "__module__", None) == mod.__name__}
    if not found:
        raise InputError(f"--custom-objects {spec_text}: the module defines no class or function")
    return found


_MISSING = (
    re.compile(r"Could not locate (?:class|function) '([^']+)'"),
    re.compile(r"Unknown (?:layer|object|loss|metric|activation|initializer|regularizer|constraint)[^']*'([^']+)'"),
)


def missing_class(message: str) -> str | None:
    """The custom class or function a Keras load error says it could not find, or None."""
    for pattern in _MISSING:
        m = pattern.search(message)
        if m:
            return m.group(1)
    return None
