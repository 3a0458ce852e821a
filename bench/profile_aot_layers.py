"""Instructions per op of edgekit's generated C on an emulated Cortex-M (QEMU TCG plugin).

The model is generated with a trace hook (``-DEDGEKIT_TRACE``) that closes the
instruction-counting window after every op and opens the next one, so the
counter reports one figure per op (plus the return). The hook itself costs a
few instructions per op, included in each figure.

    python bench/profile_aot_layers.py MODEL.tflite [--target cortex-m4] [--top 15]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgekit.aot.codegen import generate  # noqa: E402
from edgekit.aot.graph import parse  # noqa: E402
from edgekit.targets import get_target  # noqa: E402
from edgekit.toolchain.cross import build_firmware  # noqa: E402
from edgekit.toolchain.mcu_verify import generated_inputs  # noqa: E402
from edgekit.toolchain.qemu import run_firmware  # noqa: E402

HOOK = """/* profiling only: one instruction-count window per op */
#include <stdint.h>
void edgekit_mark_begin(void);
void edgekit_mark_end(void);
void ek_profile_op(int op, const void *output, int32_t bytes) {
    (void)op, (void)output, (void)bytes;
    edgekit_mark_end();
    edgekit_mark_begin();
}
"""


def profile(tflite: Path, target_name: str, work: Path) -> list[dict]:
    """One row per op: index, name, output shape, instructions (one seeded inference)."""
    code = work / "codegen"
    res = generate(tflite, code)
    (code / "ek_profile_hook.c").write_text(HOOK)
    image = build_firmware(code, get_target(target_name), work / "fw", extra_cflags=("-DEDGEKIT_TRACE=ek_profile_op",))
    run_dir = work / "run"
    run_dir.mkdir(exist_ok=True)
    generated_inputs(1, res.input_bytes, 0).tofile(run_dir / "input.bin")
    run = run_firmware(image.elf, get_target(target_name).emulator.machine, run_dir,
                       marks=(image.mark_begin, image.mark_end))
    g = parse(tflite)
    counts = run.instructions_per_inference
    if len(counts) != len(g.ops) + 1:
        raise SystemExit(f"expected {len(g.ops) + 1} counts, got {len(counts)} (no plugin support?)")
    return [{"op": op.index, "name": op.name, "shape": list(g.t(op.outputs[0]).shape), "instructions": n}
            for op, n in zip(g.ops, counts)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--target", default="cortex-m4")
    ap.add_argument("--top", type=int, default=0, help="only the N most expensive ops")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ek-profile-"))
    try:
        rows = profile(a.model, a.target, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = sum(r["instructions"] for r in rows)
    shown = sorted(rows, key=lambda r: -r["instructions"])[: a.top] if a.top else rows
    for r in shown:
        print(f"{r['op']:>4} {r['name']:<20} {str(r['shape']):<20} {r['instructions']:>12,} {100 * r['instructions'] / total:5.1f}%")
    print(f"total {total:,} instructions (trace hook included)")


if __name__ == "__main__":
    main()
