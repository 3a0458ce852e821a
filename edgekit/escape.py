"""Strings from models and file names, made safe for the files edgekit generates.

Tensor names, model descriptions and file names come from files edgekit did
not write. Before one reaches a generated file (a C/C++ comment, a Makefile or
CMake line, Arduino's ``library.properties``, Markdown) it goes through
:func:`safe_text`, which keeps only characters that are inert in all of them.
"""

from __future__ import annotations

import re

# letters, digits and punctuation with no meaning in C comments, make, CMake, .properties or Markdown code
_UNSAFE = re.compile(r"[^A-Za-z0-9 ._:;,/+=@-]")


def safe_text(s: str, limit: int = 100) -> str:
    """``s`` with every other character (newlines, ``$``, ``#``, ``*``, quotes, backslashes, non-ASCII) as ``_``, at most ``limit`` long.

    The result can sit in a comment or a plain value of any generated file
    without ending it, starting a new line or expanding anything.
    """
    out = _UNSAFE.sub("_", s)
    out = out.replace("//", "/_").replace("/*", "/_")  # keep a comment a comment
    return out if len(out) <= limit else out[: limit - 3] + "..."
