"""The wheel ships the data folders (targets/, firmware_templates/) that live outside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_wheel_contains_targets_and_templates(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("edgekit-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for toml in (REPO / "targets").glob("*.toml"):
        assert f"edgekit/_data/targets/{toml.name}" in names
    tracked = subprocess.run(["git", "ls-files", "firmware_templates"], cwd=REPO, capture_output=True, text=True).stdout.split()
    assert tracked, "no templates tracked"
    for rel in tracked:
        assert f"edgekit/_data/{rel}" in names, rel
    assert "edgekit/cli/__init__.py" in names
    for recipe in (REPO / "edgekit" / "recipes").glob("*.toml"):
        assert f"edgekit/recipes/{recipe.name}" in names
    assert "edgekit/recipes/prune50.toml" in names
    assert "edgekit/data/tflm_ops.txt" in names
    for c in (REPO / "edgekit" / "runtime" / "c").iterdir():
        assert f"edgekit/runtime/c/{c.name}" in names
    entry = [n for n in names if n.endswith("entry_points.txt")][0]
    assert "edgekit = edgekit.cli:entry" in zipfile.ZipFile(wheel).read(entry).decode()
