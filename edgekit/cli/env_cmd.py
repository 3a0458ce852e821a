"""``edgekit env``: versions of everything edgekit depends on, for bug reports."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from importlib import metadata

import click

PACKAGES = ("edgekit", "tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "tflite-micro", "numpy", "click", "jinja2", "rich")
TOOLS = {"arm-none-eabi-gcc": "--version", "qemu-system-arm": "--version", "qemu-aarch64-static": "--version", "gcc": "--version"}


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
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": pkgs, "tools": tools}


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
