"""Content hashes of what a build ships, so ``edgekit verify`` checks the files the user will flash.

``report.json``'s ``shipped`` section maps every file the build wrote (paths
relative to the build folder, ``/``-separated, sorted) to its SHA-256. The
report itself is not in it (``verify`` adds to the report).
"""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import VerificationError
from edgekit.outdir import file_sha256, manifest

NOT_HASHED = {"report.json", "report.md"}


def hash_files(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` except the report (the same hashes as the build's manifest)."""
    return {rel: digest for rel, digest in manifest(Path(folder)).items() if rel not in NOT_HASHED}


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
        if file_sha256(path) != digest:
            raise VerificationError(f"{path}: shipped file changed since the build (SHA-256 differs from report.json)",
                                    "rebuild with `edgekit build` rather than editing the output")
