"""Content hashes of what a build ships, so ``edgekit verify`` checks the files the user will flash.

``report.json``'s ``shipped`` section maps every file the build wrote (paths
relative to the build folder, ``/``-separated, sorted) to its SHA-256. The
report itself is not in it (``verify`` adds to the report).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from edgekit.errors import VerificationError

NOT_HASHED = {"report.json", "report.md"}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_files(folder: Path) -> dict[str, str]:
    """SHA-256 of every regular file under ``folder`` except the report."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return {p.relative_to(folder).as_posix(): _sha256(p) for p in files if p.relative_to(folder).as_posix() not in NOT_HASHED}


def check_files(folder: Path, recorded: dict[str, str], under: str = "") -> None:
    """Raise VerificationError (exit 6) naming the first recorded file under ``under`` that changed or is missing."""
    folder = Path(folder)
    for rel, digest in sorted(recorded.items()):
        if under and not rel.startswith(under):
            continue
        path = folder / rel
        if not path.is_file():
            raise VerificationError(f"{path}: shipped file is missing (report.json records it)",
                                    "rebuild with `edgekit build`, or restore the file")
        if _sha256(path) != digest:
            raise VerificationError(f"{path}: shipped file changed since the build (SHA-256 differs from report.json)",
                                    "rebuild with `edgekit build` rather than editing the output")
