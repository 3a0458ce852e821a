"""The build report: ``report.json`` (stable keys, for machines) and ``report.md`` (for people).

The pipeline fills :attr:`Report.data`; this module only renders it. Every
number carries the runtime that produced it (``runtimes`` section).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.escape import safe_text
from edgekit.fmt import fmt_pct

SCHEMA_VERSION = 1


@dataclass
class Report:
    """The result of one build. ``data`` is exactly what ``report.json`` holds."""

    data: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None

    def get(self, dotted: str, default: Any = None) -> Any:
        """A value by dotted key, e.g. ``report.get("memory.fits")``."""
        cur: Any = self.data
        for part in dotted.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return default
            cur = cur[part]
        return cur

    def to_json(self) -> str:
        """``report.json``: sorted keys, two-space indent, trailing newline."""
        return json.dumps(self.data, indent=2, sort_keys=True, default=_jsonable) + "\n"

    def to_markdown(self) -> str:
        """``report.md``: the same facts as a page a person reads."""
        return render_markdown(self.data)

    def write(self, folder: Path) -> None:
        """Write report.json and report.md into ``folder``."""
        (folder / "report.json").write_text(self.to_json())
        (folder / "report.md").write_text(self.to_markdown())


def _jsonable(o: Any) -> Any:
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")



def _b(v: int | None) -> str:
    return "n/a" if v is None else f"{v:,} B"


def _task_rows(d: dict[str, Any]) -> list[tuple[str, str]]:
    """The task and, for tasks other than classification (whose accuracy rows say it all), its metrics per runtime."""
    task = d.get("task") or {}
    if not task.get("name"):
        return []
    if task.get("outputs"):  # several outputs: each one's task and metrics
        rows = []
        for o in task["outputs"]:
            rows.append((f"output {o['output']}: task", f"{o['name']} ({o.get('source', '')})"))
            for runtime, m in (o.get("metrics") or {}).items():
                shown = ", ".join(f"{k} {'n/a' if v is None else f'{v:.4g}'}" for k, v in m.items())
                rows.append((f"output {o['output']}: {o['name']} ({runtime})", shown))
        return rows
    rows = [("task", f"{task['name']} ({task.get('source', '')})")]
    if task["name"] != "classification":
        for runtime, m in (task.get("metrics") or {}).items():
            shown = ", ".join(f"{k} {'n/a' if v is None else f'{v:.4g}'}" for k, v in m.items())
            rows.append((f"{task['name']} metrics ({runtime})", shown))
    return rows


def summary_rows(d: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline rows shared by report.md and the terminal table."""
    sizes, acc, agree, mem = d.get("sizes", {}), d.get("accuracy", {}), d.get("agreement", {}), d.get("memory", {})
    speed = d.get("speedup", {})
    rows = [
        ("target", f"{d['target']['name']} ({d['target']['runtime']})"),
        ("float .tflite", _b(sizes.get("float_tflite_bytes"))),
        ("int8 .tflite", _b(sizes.get("int8_tflite_bytes"))),
        ("compression ratio", "n/a" if sizes.get("compression_ratio") is None else f"{sizes['compression_ratio']:.2f}x"),
    ]
    ipi = (d.get("emulator") or {}).get("instructions_per_inference")
    if d["target"].get("runtime") == "tflm" and ipi:
        rows.append(("on the device", f"{ipi:,} instructions per inference on {d['emulator'].get('machine')} "
                     "(emulated; no float figure on the device to compare with)"))
    elif d["target"].get("runtime") == "tflm":
        rows.append(("speed-up on the device", "no device figure (LiteRT host latency is not a microcontroller figure; "
                     "`edgekit verify --emulator` measures instructions per inference)"))
    else:
        rows.append(("host speed-up (LiteRT, float/int8)", "n/a" if speed.get("host_latency_ratio") is None else f"{speed['host_latency_ratio']:.2f}x (host-measured)"))
    if not (d.get("task") or {}).get("outputs"):  # several outputs: their accuracies are in the per-output task rows
        rows += [
            ("accuracy float (keras)", fmt_pct(acc.get("float"))),
            ("accuracy int8 (litert-default)", fmt_pct(acc.get("int8_tflite"))),
            ("accuracy int8 (litert-ref)", fmt_pct(acc.get("int8_tflite_ref"))),
            ("accuracy int8 (tflm-host)", fmt_pct(acc.get("int8_tflm"))),
            ("accuracy lost", "n/a" if d.get("summary", {}).get("accuracy_lost") is None else f"{100 * d['summary']['accuracy_lost']:.2f} points"),
        ]
    rows += [
        ("top-1 agreement int8 vs float", fmt_pct(agree.get("int8_vs_float_top1"))),
        ("TFLM vs LiteRT-ref bit-exact", fmt_pct(agree.get("tflm_vs_tflite_bit_exact"))),
        ("arena (measured)", _b(mem.get("arena_bytes"))),
        ("flash needed / budget", f"{_b(mem.get('flash_bytes'))} / {_b(d['target'].get('flash_bytes'))}"),
        ("RAM needed / budget", f"{_b(mem.get('ram_bytes'))} / {_b(d['target'].get('ram_bytes'))}"),
        ("fits", str(mem.get("fits"))),
    ]
    rows[1:1] = _task_rows(d)
    q = d.get("quantization") or {}
    if q.get("scheme"):
        rows.insert(1, ("quantization", q["scheme"] + (f", {q['calibration']} ranges" if q.get("calibration") else "")))
    if q.get("cost"):
        c = q["cost"]
        rows.append(("int16x8 cost", f"arena {_b(c['arena_bytes'])} vs {_b(c['int8_arena_bytes'])} for int8 of the same model "
                     f"({c['arena_ratio']:.2f}x, {c['runtime']}); instructions: {c['instructions']}"))
    dbg = d.get("quant_debug") or {}
    if dbg.get("worst_layers"):
        rows.append(("worst int8 layers", _worst_layers(dbg["worst_layers"][:3]) + " (RMS error in quantization steps)"))
    for st in d.get("compression") or []:
        if (st.get("details") or {}).get("warning"):
            rows.append((f"warning ({st['name']})", st["details"]["warning"]))
    if dbg.get("hint"):
        rows.append(("hint", dbg["hint"]))
    for g in (d.get("verdict") or {}).get("gates", []):
        rows.append((f"gate {g['gate']}", f"{'pass' if g['passed'] else 'FAIL'}: {g['detail']}"))
    for line in d.get("failures", []):
        rows.append(("runtime failed", line))
    for line in d.get("warnings", []):
        rows.append(("warning", line))
    emu = d.get("emulator")
    if emu:
        rows.append(("emulator", f"{emu.get('machine')}: bit-exact {fmt_pct(emu.get('outputs_bit_exact'))}, accuracy {fmt_pct(emu.get('accuracy'))}"))
        for key, label in (("flash_bytes", "emulator flash"), ("ram_bytes", "emulator RAM"), ("stack_bytes", "emulator stack")):
            if emu.get(key) is not None:
                rows.append((label, _b(emu[key])))
        if emu.get("instructions_per_inference") is not None:
            rows.append(("instructions / inference", f"{emu['instructions_per_inference']:,} (emulated)"))
        for g in (emu.get("verdict") or {}).get("gates", []):
            rows.append((f"emulator gate {g['gate']}", f"{'pass' if g['passed'] else 'FAIL'}: {g['detail']}"))
        if emu.get("emulated_latency_ms") is not None:
            rows.append(("emulated latency", f"{emu['emulated_latency_ms']:.2f} ms ({emu.get('latency_note') or 'emulated, not a device benchmark'})"))
    return rows



def _worst_layers(worst: list[dict[str, Any]]) -> str:
    """``dense_1 (SOFTMAX) 2.14, conv2d 0.32, dense_1 (FULLY_CONNECTED) 0.29``: a layer shown twice (its
    activation is an op of its own) is told apart by the op."""
    names = [w["layer"] for w in worst]
    shown = []
    for w in worst:
        op = f" ({w['op']})" if names.count(w["layer"]) > 1 else ""
        shown.append(f"{w['layer']}{op} {w['rmse_over_scale']:.2f}")
    return ", ".join(shown)

def _table(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return out


def _stage_markdown(st: dict[str, Any]) -> list[str]:
    """One compression stage: its settings, scalar details, and per-layer tables."""
    params = ", ".join(f"{k}={v}" for k, v in st.get("params", {}).items())
    lines = [f"### {st['name']} ({st.get('seconds', 0):.1f} s)", "", f"Settings: {params or 'defaults'}", ""]
    for key, value in st.get("details", {}).items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines += ["", f"{key}:", "", *_table(value), ""]
        elif isinstance(value, dict):
            lines.append(f"- {key}: " + ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            lines.append(f"- {key}: {value}")
    lines.append("")
    return lines


def render_markdown(d: dict[str, Any]) -> str:
    """Render the report dict as Markdown."""
    # the file name and op names come from the user's files: keep them from forming Markdown
    lines = [f"# edgekit build report: {safe_text(Path(str(d.get('input_model', '?'))).name)} → {d['target']['name']}", ""]
    if d.get("error"):
        lines += [f"**Build failed:** {d['error']}", ""]
    lines += ["| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary_rows(d)]
    lines += ["", "## Stages", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {s['name']} | {s['seconds']:.2f} |" for s in d.get("stages", [])]
    if d.get("compression"):
        lines += ["", "## Compression", ""]
        for st in d["compression"]:
            lines += _stage_markdown(st)
    mem = d.get("memory", {})
    if mem.get("largest_layers"):
        lines += ["", "## Largest layers", ""]
        for kind, items in mem["largest_layers"].items():
            lines += [f"By {kind}:", ""]
            lines += [f"- {it.get('layer', it.get('name', '?'))} ({it.get('op', '')}): {it.get('bytes', 0):,} B" for it in items]
            lines.append("")
    if mem.get("breakdown"):
        lines += ["", "## Memory breakdown", ""]
        lines += [f"- {k}: {v}" for k, v in mem["breakdown"].items()]
    lines += ["", "## Where the numbers come from", ""]
    lines += [f"- {k}: {v}" for k, v in d.get("runtimes", {}).items()]
    lines += ["", f"Ops: {safe_text(', '.join(d.get('ops', [])), 2000)}", "", f"edgekit {d.get('edgekit_version')}, seed {d.get('seed')}", ""]
    return "\n".join(lines)
