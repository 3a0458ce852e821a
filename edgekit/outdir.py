"""Output folders: edgekit only ever deletes or replaces a folder it wrote itself and that holds nothing else.

Every folder edgekit writes (``build``, ``emit``, ``codegen``) is staged in a
hidden sibling (``.NAME.XXXX``), gets a manifest (:data:`MANIFEST`: every file
with its SHA-256) and is swapped into place: the old folder is renamed aside,
the new one renamed in, then the old one deleted. A failure (or a signal, which
the CLI turns into an exception) before the swap removes the staging folder and
leaves the old build as it was.

An existing ``--out`` is replaced only when its manifest lists exactly the
files it holds, with the same hashes. ``--out`` may not be the current folder,
one of its parents, the home folder, or a folder holding one of the inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from edgekit.errors import InputError

MANIFEST = ".edgekit-manifest.json"
_CHOOSE = "choose another --out (a new folder, or one edgekit wrote)"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for root, dirs, names in os.walk(folder, followlinks=False):
        for n in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            p = Path(root) / n
            out[p.relative_to(folder).as_posix()] = p
    return out


def manifest(folder: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file under ``folder`` except the manifest itself."""
    return {rel: file_sha256(p) for rel, p in sorted(_files(folder).items()) if rel != MANIFEST}


def write_manifest(folder: Path) -> None:
    """Record what ``folder`` holds in its :data:`MANIFEST` (same files, same bytes)."""
    text = json.dumps({"written_by": "edgekit", "files": manifest(folder)}, indent=1, sort_keys=True) + "\n"
    (folder / MANIFEST).write_text(text)


def record_writes(folder: Path, paths: Iterable[str]) -> None:
    """Update ``folder``'s manifest for the files edgekit (re)wrote at or under ``paths`` (relative).

    Other entries keep their recorded hashes, so a file the user changed still
    makes the folder theirs. A folder without a manifest is left as it is.
    """
    prefixes = tuple(paths)
    try:
        recorded = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return

    def ours(rel: str) -> bool:
        return any(rel == p or rel.startswith(p + "/") for p in prefixes)

    now = {rel: p for rel, p in _files(folder).items() if rel != MANIFEST and ours(rel)}
    files = {k: v for k, v in recorded.items() if not ours(k)} | {rel: file_sha256(p) for rel, p in now.items()}
    text = json.dumps({"written_by": "edgekit", "files": dict(sorted(files.items()))}, indent=1, sort_keys=True) + "\n"
    (folder / MANIFEST).write_text(text)


def is_own(folder: Path) -> bool:
    """True when ``folder``'s manifest lists exactly the regular files it holds, with their hashes."""
    try:
        recorded = json.loads((folder / MANIFEST).read_text())["files"]
        files = _files(folder)
        if any(p.is_symlink() or not p.is_file() for p in files.values()):
            return False
        return isinstance(recorded, dict) and recorded == manifest(folder)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_out_dir(out: Path, inputs: Iterable[str | Path | None] = ()) -> None:
    """Raise InputError (exit 2) unless edgekit may write ``out`` (see the module docstring)."""
    out = Path(out)
    if out.is_symlink():
        raise InputError(f"{out}: output path is a symbolic link; refusing to write through it", _CHOOSE)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder", _CHOOSE)
    target = out.resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if _within(cwd, target):
        raise InputError(f"{out}: output folder is the current folder or one of its parents; refusing to replace it", _CHOOSE)
    if _within(home, target):
        raise InputError(f"{out}: output folder is the home folder or one of its parents; refusing to replace it", _CHOOSE)
    for inp in inputs:
        if inp is not None and _within(Path(inp).resolve(), target):
            raise InputError(f"{out}: output folder holds the input {inp}; refusing to replace it", _CHOOSE)
    if out.is_dir() and any(out.iterdir()) and not is_own(out):
        raise InputError(f"{out}: output folder holds files edgekit did not write (or that changed since); refusing to replace it",
                         _CHOOSE)
    parent = target.parent
    while not parent.exists():  # missing parents are created when writing, like mkdir -p
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{out}: cannot create the output folder: {parent} is not an existing folder")
    try:  # a real probe: permission bits say nothing when running as root
        Path(tempfile.mkdtemp(prefix=f".{out.name}.probe.", dir=parent)).rmdir()
    except OSError as exc:
        raise InputError(f"{out}: output folder is not writable ({exc.strerror})") from None


def _swap(stage: Path, out: Path) -> None:
    """Rename ``stage`` to ``out``; an existing ``out`` is renamed aside first and deleted last."""
    aside = None
    if out.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        aside.rmdir()
        os.rename(out, aside)
    try:
        os.rename(stage, out)
    except BaseException:
        if aside is not None:
            try:
                os.rename(aside, out)
            except OSError:  # another run's complete build took its place: the old one is ours to drop
                shutil.rmtree(aside, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def staged(out: Path, inputs: Iterable[str | Path | None] = ()) -> Iterator[Path]:
    """Yield an empty staging folder; on success record its manifest and swap it into ``out``.

    ``out`` is checked first (:func:`check_out_dir`) and again just before the
    swap, since another process may have written it meanwhile. On any exception
    the staging folder is removed and ``out`` is left untouched.
    """
    out = Path(out)
    inputs = list(inputs)
    check_out_dir(out, inputs)
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        yield stage
        write_manifest(stage)
        check_out_dir(out, inputs)
        try:
            _swap(stage, parent / out.name)
        except OSError as exc:  # a concurrent run swapped its folder in between our check and rename
            raise InputError(f"{out}: another edgekit run replaced this folder at the same time ({exc.strerror})",
                             "run one build per --out") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
