"""TFLM_DIR: edgekit accepts a TFLM checkout only when it can build offline, and says exactly what is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from edgekit.errors import ToolchainError
from edgekit.toolchain.tflm_tree import open_tflm_tree

DOWNLOADS = Path("tensorflow/lite/micro/tools/make/downloads")


def _provenance_commit(tree: Path) -> str:
    m = re.search(r"at commit ([0-9a-f]{40})", (tree / "PROVENANCE.md").read_text())
    assert m, "PROVENANCE.md names no commit"
    return m.group(1)


def test_no_tflm_dir_and_a_wrong_folder_are_one_line_toolchain_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("TFLM_DIR", raising=False)
    with pytest.raises(ToolchainError) as exc:
        open_tflm_tree(None)
    assert exc.value.exit_code == 7
    assert "--tflm-dir" in exc.value.one_line() and "TFLM_DIR" in exc.value.one_line()

    with pytest.raises(ToolchainError) as exc:
        open_tflm_tree(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in exc.value.message and "no such folder" in exc.value.message

    (tmp_path / "README.md").write_text("not TFLM\n")
    with pytest.raises(ToolchainError) as exc:
        open_tflm_tree(tmp_path)
    assert exc.value.message.startswith(f"TFLM_DIR {tmp_path}: not a tflite-micro checkout")
    assert "\n" not in exc.value.one_line()


def test_a_checkout_without_its_downloads_is_refused_naming_each_one(tmp_path, tflm_src):
    """TFLM's own .gitignore drops tools/make/downloads: a checkout committed to git loses them."""
    tree = tmp_path / "tflm"
    shutil.copytree(tflm_src, tree, symlinks=True, copy_function=os.symlink)  # a tree of symlinks, no copy
    shutil.rmtree(tree / DOWNLOADS, ignore_errors=True)
    with pytest.raises(ToolchainError) as exc:
        open_tflm_tree(tree)
    msg = exc.value.one_line()
    assert exc.value.exit_code == 7 and "\n" not in msg
    for dep in ("flatbuffers", "gemmlowp", "ruy", "kissfft", "pigweed", "CMSIS_6", "CMSIS-NN"):
        assert dep in msg
    assert "third_party_downloads" in msg and ".gitignore" in msg

    with pytest.raises(ToolchainError) as exc:  # the reference kernels do not need CMSIS-NN
        open_tflm_tree(tree, variants=("reference",))
    assert "CMSIS-NN" not in exc.value.message and "flatbuffers" in exc.value.message


def test_the_shared_tree_builds_offline_and_is_the_commit_docker_pins(tflm_dir):
    tree = open_tflm_tree(tflm_dir)
    assert tree.variants == ("reference", "cmsis_nn")
    if (tflm_dir / "PROVENANCE.md").is_file():
        assert tree.commit == _provenance_commit(tflm_dir)
    docker = (REPO / "docker" / "Dockerfile.tflm").read_text()
    assert f"ARG TFLM_COMMIT={tree.commit}\n" in docker


def test_dockerfile_tflm_pins_the_commit_of_the_shared_tree(tflm_src):
    commit = _provenance_commit(tflm_src)
    docker = (REPO / "docker" / "Dockerfile.tflm").read_text()
    assert re.findall(r"^ARG TFLM_COMMIT=([0-9a-f]{40})$", docker, re.M) == [commit]


def test_env_shows_what_stops_tflm_dir_from_building(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TFLM_DIR"}
    proc = subprocess.run([sys.executable, "-m", "edgekit", "env"], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^TFLM_DIR\s+not set$", proc.stdout, re.M)
    proc = subprocess.run([sys.executable, "-m", "edgekit", "env"], cwd=REPO, env={**env, "TFLM_DIR": str(tmp_path)},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("TFLM_DIR"))
    assert f"TFLM_DIR {tmp_path}: not a tflite-micro checkout" in line
