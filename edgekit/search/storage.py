"""Where the study lives: a journal file in the output folder, or a database URL.

The default is optuna's ``JournalStorage`` on ``OUT/study.journal``: an
append-only log with a file lock, safe for several worker processes on one
machine. ``postgresql://...`` (or another SQLAlchemy URL) shares one study
between machines. SQLite is refused with several workers: it is not safe for
parallel writers.
"""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

from edgekit.errors import InputError

JOURNAL_NAME = "study.journal"
HEARTBEAT_SECONDS = 20  # database studies: a trial whose process stops beating for 3x this is failed (and retried)


def open_storage(url: str | None, out_dir: Path, workers: int = 1):
    """The optuna storage for ``url`` (``None``: the journal file in ``out_dir``)."""
    import optuna

    if url is None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(out_dir / JOURNAL_NAME)))
    if url.startswith("sqlite") and workers > 1:
        raise InputError(f"--storage {url}: SQLite is not safe for parallel writers", "drop --storage (journal file) or use postgresql://")
    if "://" not in url:
        raise InputError(f"--storage {url}: not a database URL", "e.g. postgresql://user@host/db; without --storage the study is a journal file in --out")
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in optuna; the warning says nothing to the user
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=3 * HEARTBEAT_SECONDS)
    except ImportError as exc:
        raise InputError(f"--storage {url}: the database driver is missing ({exc})", "pip install 'psycopg[binary]' (SQLAlchemy's PostgreSQL driver)") from None
    except Exception as exc:  # SQLAlchemy's OperationalError and friends: the server refused or is not there
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise InputError(f"--storage {url}: cannot open the database ({type(exc).__name__}: {first})") from None


def worker_id() -> str:
    """``host:pid`` of this process, stored on each trial so a later run can tell a dead worker's trial."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_dead_local_worker(owner: str | None) -> bool:
    """True when ``owner`` (from :func:`worker_id`) is a process of this machine that no longer runs."""
    if not owner or ":" not in owner:
        return False
    host, pid = owner.rsplit(":", 1)
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False
