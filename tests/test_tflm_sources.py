"""What the emitted TFLM project names from TFLM exists in the pinned TFLM sources (read, not compiled):
the ops edgekit accepts, the resolver methods main.cc calls, the headers it includes."""

from __future__ import annotations

import re
from pathlib import Path

from edgekit.resources import templates_dir
from edgekit.tflm_compat import TFLM_CUSTOM_OPS, resolver_method, tflm_builtin_ops

MICRO = Path("tensorflow/lite/micro")


def test_every_op_edgekit_accepts_has_a_kernel_and_a_resolver_method_in_tflm(tflm_src):
    kernel_headers = "".join(p.read_text() for p in (tflm_src / MICRO / "kernels").glob("*.h"))
    registered = set(re.findall(r"TFLMRegistration\*? ?Register_([A-Z0-9_]+)\(\)", kernel_headers))
    resolver = (tflm_src / MICRO / "micro_mutable_op_resolver.h").read_text()
    methods = set(re.findall(r"TfLiteStatus (Add\w+)\(", resolver))
    ops = tflm_builtin_ops()
    assert len(ops) > 90
    assert sorted(ops - registered) == []
    assert sorted(op for op in ops if resolver_method(op) not in methods) == []
    assert sorted(m for m in TFLM_CUSTOM_OPS.values() if m not in methods) == []


def test_every_tflm_header_the_templates_include_exists(tflm_src):
    included = {}
    for template in (templates_dir() / "tflm").rglob("*.j2"):
        for header in re.findall(r'#include [<"](tensorflow/[^>"]+)[>"]', template.read_text()):
            included.setdefault(header, template.name)
    assert "tensorflow/lite/micro/micro_interpreter.h" in included
    missing = {h: t for h, t in included.items() if not (tflm_src / h).is_file()}
    assert missing == {}
