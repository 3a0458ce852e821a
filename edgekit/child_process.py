"""Child processes that die with edgekit, even when edgekit itself is killed with SIGKILL."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved here, in the parent: the child between fork and exec must not dlopen (another thread of the
# parent may have held the loader's lock at fork time).
_PRCTL = _load_prctl()


def die_with_parent() -> None:
    """``preexec_fn`` for :class:`subprocess.Popen`: the kernel sends the child SIGKILL when its parent dies.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere a no-op. The signal comes
    when the *thread* that started the child exits, so start long-lived children
    from a thread that outlives them (edgekit keeps one arena probe per thread).
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)


def child_env() -> dict[str, str]:
    """This process's environment, with the edgekit being run first on the child's path (whatever the cwd)."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env
