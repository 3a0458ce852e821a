"""The build host's description for benchmark JSON: architecture and CPU model."""

from __future__ import annotations

import platform
from pathlib import Path


def host() -> str:
    """E.g. ``x86_64 AMD EPYC 7B13``: what ran the host-side measurements of a benchmark."""
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    except OSError:
        pass
    return f"{platform.machine()} {cpu or platform.processor()}".strip()
