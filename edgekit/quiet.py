"""Keep TensorFlow's and LiteRT's C++ logging out of edgekit's output."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence C++ logging on fds 1 and 2 and Python prints while TensorFlow converts.

    The converter ignores TF_CPP_MIN_LOG_LEVEL in places, and Keras 3 prints an
    export summary; neither belongs in edgekit's output.
    """
    import io
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def import_quietly(name: str):
    """Import a module (``tensorflow``, ``keras``, ``tf_keras``) without its start-up log lines on fd 2."""
    import importlib
    import sys

    if name in sys.modules:
        return sys.modules[name]
    with quiet():
        return importlib.import_module(name)
