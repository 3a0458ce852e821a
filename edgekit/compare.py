"""``compare``: run several recipes on one model and put their builds side by side.

Each recipe goes through the ordinary :func:`edgekit.pipeline.build` into its
own folder ``<out>/<recipe>/``; every number in the comparison is read from
that build's report (never recomputed), so the table and the individual
``report.json`` files cannot disagree. The three ratios are those of each
build against the float model: compression ratio (float ``.tflite`` bytes /
int8 bytes), host speed-up (float latency / int8 latency) and accuracy lost
(float top-1 − deployed int8 top-1).

Outputs: ``compare.json``, ``compare.md`` (Markdown table + plot),
``compare.html`` and ``compare.png`` (matplotlib, Agg backend).
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from edgekit.errors import BudgetError, EdgekitError, InputError, VerificationError
from edgekit.fmt import fmt_int, fmt_num, fmt_pct
from edgekit.recipe import Recipe

DEFAULT_RECIPES = ("none", "prune50", "structured50", "lowrank50")

# (row attribute, report.json key): the single mapping from reports to the table
FIELDS: tuple[tuple[str, str], ...] = (
    ("flash_bytes", "memory.flash_bytes"),
    ("arena_bytes", "memory.arena_bytes"),
    ("ram_bytes", "memory.ram_bytes"),
    ("int8_tflite_bytes", "sizes.int8_tflite_bytes"),
    ("float_tflite_bytes", "sizes.float_tflite_bytes"),
    ("int8_latency_ms", "latency.int8_ms"),
    ("float_latency_ms", "latency.float_ms"),
    ("instructions_per_inference", "emulator.instructions_per_inference"),
    ("accuracy_float", "accuracy.float"),
    ("accuracy_deployed", "__deployed__"),
    ("compression_ratio", "sizes.compression_ratio"),
    ("speedup", "speedup.host_latency_ratio"),
    ("accuracy_lost", "summary.accuracy_lost"),
)


@dataclass
class CompareRow:
    """One recipe's build: where it went and the numbers its report holds (None when the report has none)."""

    recipe: str
    source: str
    out_dir: str
    flash_bytes: int | None = None
    arena_bytes: int | None = None
    ram_bytes: int | None = None
    int8_tflite_bytes: int | None = None
    float_tflite_bytes: int | None = None
    int8_latency_ms: float | None = None
    float_latency_ms: float | None = None
    instructions_per_inference: int | None = None
    accuracy_float: float | None = None
    accuracy_deployed: float | None = None
    compression_ratio: float | None = None
    speedup: float | None = None
    accuracy_lost: float | None = None
    fits: bool | None = None
    error: str | None = None
    exit_code: int = 0

    @classmethod
    def from_report(cls, recipe: Recipe, out_dir: Path, data: dict[str, Any], error: EdgekitError | None = None) -> "CompareRow":
        """The row of one build, read from its ``report.json`` data."""
        row = cls(recipe=recipe.name, source=recipe.source, out_dir=str(out_dir))
        for attr, key in FIELDS:
            if key == "__deployed__":
                which = _get(data, "summary.accuracy_deployed_runtime")
                setattr(row, attr, _get(data, f"accuracy.{which}") if which else None)
            else:
                setattr(row, attr, _get(data, key))
        row.fits = _get(data, "memory.fits")
        if error is not None:
            row.error, row.exit_code = error.one_line(), error.exit_code
        return row

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _get(d: dict[str, Any], dotted: str) -> Any:
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


@dataclass
class Comparison:
    """All rows, the model and target they share, and the files written (``outputs``)."""

    model: str
    target: str
    seed: int
    out_dir: str = ""
    rows: list[CompareRow] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[CompareRow]:
        """Rows whose build raised (over budget, unsupported op, ...)."""
        return [r for r in self.rows if r.error]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "target": self.target, "seed": self.seed, "out_dir": self.out_dir, "rows": [r.to_dict() for r in self.rows], "outputs": self.outputs}

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and formatted cells, shared by the Markdown, HTML and CLI renderings."""
        head = ["recipe", "flash B", "arena B", "int8 .tflite B", "host ms", "instr/inf", "accuracy", "compression ×", "host speed-up ×", "accuracy lost", "note"]
        rows = []
        for r in self.rows:
            rows.append([
                r.recipe, fmt_int(r.flash_bytes), fmt_int(r.arena_bytes), fmt_int(r.int8_tflite_bytes), fmt_num(r.int8_latency_ms, 4),
                fmt_int(r.instructions_per_inference), fmt_pct(r.accuracy_deployed), fmt_num(r.compression_ratio, 2), fmt_num(r.speedup, 2),
                _pts(r.accuracy_lost), r.error or ("" if r.fits in (None, True) else "over budget"),
            ])
        return head, rows

    def to_markdown(self) -> str:
        head, rows = self.table()
        lines = [f"# edgekit compare: {Path(self.model).name} on {self.target}", "",
                 "Every number comes from the build's own `report.json` (`<recipe>/report.json`). Ratios are against the float model: "
                 "compression = float .tflite bytes / int8 .tflite bytes, speed-up = float / int8 host latency (litert-default, build machine), "
                 "accuracy lost = float top-1 − deployed int8 top-1.", "",
                 "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        if "plot" in self.outputs:
            lines += ["", f"![flash, arena and accuracy per recipe]({self.outputs['plot']})"]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        head, rows = self.table()
        th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        trs = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        img = f'<p><img src="{html.escape(self.outputs["plot"])}" alt="flash, arena and accuracy per recipe"></p>' if "plot" in self.outputs else ""
        title = html.escape(f"edgekit compare: {Path(self.model).name} on {self.target}")
        return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
                "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px 8px;text-align:right}"
                "td:first-child,th:first-child{text-align:left}</style></head>\n"
                f"<body><h1>{title}</h1>\n<p>Numbers from each build's report.json; ratios against the float model.</p>\n"
                f"<table><thead><tr>{th}</tr></thead><tbody>\n{trs}\n</tbody></table>\n{img}\n</body></html>\n")

    def write(self, folder: Path) -> None:
        """Write compare.png (when matplotlib is installed), compare.json, compare.md and compare.html into ``folder``."""
        if plot(self, folder / "compare.png"):
            self.outputs["plot"] = "compare.png"
        self.outputs.update({"json": "compare.json", "markdown": "compare.md", "html": "compare.html"})
        (folder / "compare.json").write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        (folder / "compare.md").write_text(self.to_markdown())
        (folder / "compare.html").write_text(self.to_html())


def _pts(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):+.2f} pt"


def plot(cmp: Comparison, path: Path) -> bool:
    """Bar charts of flash, arena (or int8 size) and accuracy per recipe; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = [r.recipe for r in cmp.rows]
    panels = [("flash bytes", [r.flash_bytes for r in cmp.rows])]
    if any(r.arena_bytes for r in cmp.rows):
        panels.append(("TFLM arena bytes", [r.arena_bytes for r in cmp.rows]))
    else:
        panels.append(("int8 .tflite bytes", [r.int8_tflite_bytes for r in cmp.rows]))
    panels.append(("deployed top-1 accuracy (%)", [None if r.accuracy_deployed is None else 100 * r.accuracy_deployed for r in cmp.rows]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (title, values) in zip(axes, panels):
        vals = [0 if v is None else v for v in values]
        ax.bar(range(len(names)), vals, color="#4477aa")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        if "accuracy" in title and any(v is not None for v in values):
            lo = min(v for v in values if v is not None)
            ax.set_ylim(max(0, lo - 5), 100)
    fig.suptitle(f"{Path(cmp.model).name} on {cmp.target}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})  # no version stamp: same inputs, same bytes
    plt.close(fig)
    return True


def parse_recipes(spec: str | Sequence[str | Path | Recipe] | None) -> list[Recipe]:
    """Recipes from a comma-separated string of bundled names / ``.toml`` paths, or a sequence of them."""
    if spec is None:
        items: list[Any] = list(DEFAULT_RECIPES)
    elif isinstance(spec, str):
        items = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        items = list(spec)
    if not items:
        raise InputError("--recipes is empty", f"pass a comma-separated list, e.g. {','.join(DEFAULT_RECIPES)}")
    return [r if isinstance(r, Recipe) else Recipe.load(r) for r in items]


def _labels(recipes: list[Recipe]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for r in recipes:
        base = "".join(c if c.isalnum() or c in "-_+." else "_" for c in r.name)
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


def run_emulator(build_dir: Path, data: dict[str, Any], n_inputs: int, seed: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Run the build on its QEMU machine and store the ``emulator`` section in its report, as ``edgekit verify --emulator`` does."""
    from edgekit.outdir import record_writes
    from edgekit.report import Report
    from edgekit.toolchain.mcu_verify import verify_mcu_build

    progress("emulator")
    data = dict(data)
    data["emulator"] = verify_mcu_build(build_dir, n_inputs=n_inputs, seed=seed).to_dict()
    Report(data=data, out_dir=build_dir).write(build_dir)
    record_writes(build_dir, ("report.json", "report.md", "emulator"))  # the build stays edgekit's to replace
    return data


def compare(
    model: str | Path,
    target: str | Path,
    *,
    recipes: str | Sequence[str | Path | Recipe] | None = None,
    calib: str | Path | None = None,
    eval: str | Path | None = None,  # noqa: A002 - mirrors the CLI flag
    train: str | Path | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    codegen: bool = False,
    emulator: bool = False,
    emulator_inputs: int = 20,
    max_eval: int | None = None,
    quant: str | None = None,
    calibration: str | None = None,
    progress: Callable[[str], None] | None = None,
    gates: Any = None,
    task: str | None = None,
) -> Comparison:
    """Build ``model`` for ``target`` once per recipe and collect the reports; write the table and plot into ``out_dir``.

    A build that fails (over budget, unsupported op ...) becomes a row with
    its error; other rows still run. Bad recipes or inputs raise
    :class:`InputError`. With ``emulator`` (microcontroller targets), each
    build also runs on the target's QEMU machine (as ``edgekit verify
    --emulator`` does), which adds the ``emulator`` section, with
    instructions per inference, to its report. ``gates``
    (:class:`edgekit.verify.gates.Gates`) apply to every build: a recipe that
    breaks one is a failed row (exit 6) with its full report and verdict.
    ``task`` (:data:`edgekit.task.TASKS`, None to infer) applies to every build.
    """
    from edgekit.pipeline import build
    from edgekit.targets import get_target

    prof = get_target(target) if not hasattr(target, "is_mcu") else target
    rec_list = parse_recipes(recipes)
    if emulator and not prof.is_mcu:
        raise InputError(f"--emulator in compare is for microcontroller targets; {prof.name} is not one",
                         "use `edgekit verify BUILD --emulator` on a Pi build folder")
    out = Path(out_dir) if out_dir is not None else Path("edgekit-out") / f"{Path(model).stem}-{prof.name}-compare"
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "compare.json").is_file():
        raise InputError(f"{out}: output folder exists and is not an edgekit comparison; refusing to write into it", "choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    cmp = Comparison(model=str(Path(model).resolve()), target=prof.name, seed=seed, out_dir=str(out))
    for rec, label in zip(rec_list, _labels(rec_list)):
        sub = out / label
        if progress:
            progress(f"recipe {label}")

        def tagged(stage: str, label: str = label) -> None:
            if progress:
                progress(f"{label}: {stage}")

        error: EdgekitError | None = None
        data: dict[str, Any] = {}
        try:
            report = build(model, prof, calib=calib, eval=eval, train=train, out_dir=sub, recipe=rec, seed=seed,
                           codegen=codegen, max_eval=max_eval, quant=quant, calibration=calibration,
                           progress=tagged if progress else None, gates=gates, task=task)
            data = report.data
            if emulator:
                data = run_emulator(sub, data, emulator_inputs, seed, tagged)
        except InputError:
            raise  # the inputs are shared: every other recipe would fail the same way
        except EdgekitError as exc:
            error = exc
            if isinstance(exc, (BudgetError, VerificationError)) and (sub / "report.json").is_file():
                data = json.loads((sub / "report.json").read_text())
        cmp.rows.append(CompareRow.from_report(rec, Path(label), data, error))
    cmp.write(out)
    return cmp
