"""Child processes that die with edgekit, even when edgekit itself is killed with SIGKILL."""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for :class:`subprocess.Popen`: the kernel sends the child SIGKILL when its parent dies.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere a no-op. The signal comes
    when the *thread* that started the child exits, so start long-lived children
    from a thread that outlives them (edgekit keeps one arena probe per thread).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass
