"""``edgekit env``: versions of everything edgekit depends on, for bug reports."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from importlib import metadata

import click

PACKAGES = ("edgekit", "tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "tflite-micro", "numpy", "click", "jinja2", "rich")
TOOLS = {"arm-none-eabi-gcc": "--version", "arm-none-eabi-g++": "--version", "qemu-system-arm": "--version", "qemu-aarch64-static": "--version", "gcc": "--version"}


def collect() -> dict:
    """Python, platform, package versions and external tool versions."""
    pkgs = {}
    for p in PACKAGES:
        try:
            pkgs[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pkgs[p] = None
    tools = {}
    for tool, flag in TOOLS.items():
        path = shutil.which(tool)
        if path is None:
            tools[tool] = None
            continue
        try:
            first = subprocess.run([path, flag], capture_output=True, text=True, timeout=10).stdout.splitlines()
            tools[tool] = first[0] if first else path
        except (OSError, subprocess.TimeoutExpired):
            tools[tool] = path
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": pkgs, "tools": tools,
            "tflm_dir": _tflm_dir()}


def _tflm_dir() -> dict | None:
    """$TFLM_DIR: its path and commit, or what stops edgekit from building it (None when unset)."""
    from edgekit.errors import ToolchainError
    from edgekit.toolchain.tflm_tree import open_tflm_tree

    if not os.environ.get("TFLM_DIR"):
        return None
    try:
        tree = open_tflm_tree(None)
    except ToolchainError as exc:
        return {"path": os.environ["TFLM_DIR"], "commit": None, "problem": exc.one_line()}
    return {"path": str(tree.root), "commit": tree.commit, "problem": None}


@click.command(name="env")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def command(as_json: bool) -> None:
    """Print versions of Python, edgekit's dependencies and toolchain (paste into bug reports)."""
    info = collect()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"python    {info['python']} ({info['platform']})")
    for k, v in {**info["packages"], **info["tools"]}.items():
        click.echo(f"{k:<30} {v or 'not installed'}")
    tflm = info["tflm_dir"]
    if tflm is None:
        click.echo(f"{'TFLM_DIR':<30} not set")
    else:
        click.echo(f"{'TFLM_DIR':<30} " + (f"{tflm['path']} (commit {tflm['commit']})" if tflm["commit"] else tflm["problem"]))
