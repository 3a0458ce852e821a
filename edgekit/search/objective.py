"""One trial: build the trial's recipe with :func:`edgekit.pipeline.build` and read its measured figures.

The figures are the build's own (``report.json``), never estimated here:
accuracy on the deployed runtime (``summary.accuracy_deployed_runtime``: the
TFLM interpreter for microcontroller targets, LiteRT for a Pi), flash and RAM
from ``memory`` (for TFLM targets: the .tflite bytes plus edgekit's TFLM code
estimate for flash, the measured arena plus runtime state for RAM), and, when
asked for, instructions per inference on the target's QEMU machine (as
``edgekit verify --emulator`` measures them). With ``memory = "aot"``, flash
and RAM are instead those of edgekit's own C runtime for the model,
cross-compiled and linked for the target (:func:`_linked`); its outputs are
bit-exact with TFLM's reference kernels, so the accuracy stays the TFLM one. Budget constraints are
``flash - budget`` and ``ram - budget``: a trial is feasible when both are <= 0.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import BudgetError, EdgekitError, InputError
from edgekit.recipe import Recipe

# objective name -> (figure key, optuna direction)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "maximize"),
    "flash": ("flash_bytes", "minimize"),
    "ram": ("ram_bytes", "minimize"),
    "instructions": ("instructions_per_inference", "minimize"),
}


def parse_objectives(spec: str | list[str]) -> list[str]:
    """``accuracy,flash,ram[,instructions]`` → a checked list (InputError for unknown or repeated names)."""
    names = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    for n in names:
        if n not in OBJECTIVES:
            raise InputError(f"--objectives: unknown objective {n!r}", f"valid: {', '.join(OBJECTIVES)}")
    if not names or len(set(names)) != len(names):
        raise InputError(f"--objectives: need distinct objectives, got {spec!r}", "e.g. accuracy,flash,ram")
    return names


@dataclass(frozen=True)
class TrialSetup:
    """What every trial shares: the model, data, target, seed and where builds go (picklable, for worker processes)."""

    model: str
    target: str
    calib: str | None
    eval: str | None
    train: str | None
    out_dir: str
    seed: int = 0
    objectives: tuple[str, ...] = ("accuracy", "flash", "ram")
    max_eval: int | None = None
    emulator_inputs: int = 20
    memory: str = "tflm"  # tflm: the build's memory figures; aot: edgekit's C runtime linked for the target


@dataclass
class TrialFigures:
    """A trial's measured figures (None when the build did not produce them) and its status."""

    status: str  # ok | infeasible | failed | interrupted
    accuracy: float | None = None
    accuracy_float: float | None = None
    flash_bytes: int | None = None
    ram_bytes: int | None = None
    flash_budget_bytes: int | None = None
    ram_budget_bytes: int | None = None
    instructions_per_inference: int | None = None
    int8_tflite_bytes: int | None = None
    accuracy_runtime: str | None = None
    seconds: float = 0.0
    stages: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def values(self, objectives: tuple[str, ...]) -> list[float]:
        """The objective values in optuna's order."""
        return [float(getattr(self, OBJECTIVES[o][0])) for o in objectives]

    def constraints(self) -> list[float]:
        """``flash - budget``, ``ram - budget`` (<= 0: fits)."""
        return [float(self.flash_bytes - self.flash_budget_bytes), float(self.ram_bytes - self.ram_budget_bytes)]


def figures_from_report(data: dict[str, Any], status: str, recipe: Recipe, build_dir: Path) -> TrialFigures:
    """The figures a ``report.json`` holds, read through ``edgekit compare``'s one mapping from reports to numbers."""
    from edgekit.compare import CompareRow

    row = CompareRow.from_report(recipe, build_dir, data)
    mem = data.get("memory", {})
    return TrialFigures(
        status=status,
        accuracy=row.accuracy_deployed,
        accuracy_float=row.accuracy_float,
        flash_bytes=row.flash_bytes,
        ram_bytes=row.ram_bytes,
        flash_budget_bytes=mem.get("flash_budget_bytes"),
        ram_budget_bytes=mem.get("ram_budget_bytes"),
        instructions_per_inference=row.instructions_per_inference,
        int8_tflite_bytes=row.int8_tflite_bytes,
        accuracy_runtime=data.get("summary", {}).get("accuracy_deployed_runtime"),
        stages=list(data.get("stages", [])),
    )


def run_trial(setup: TrialSetup, recipe: Recipe, build_dir: Path) -> TrialFigures:
    """Build ``recipe`` into ``build_dir`` and return its figures.

    Over budget is not a failure here: the build's report is read and the
    trial is ``infeasible``. Any other :class:`EdgekitError` (conversion
    failed, an op the runtime lacks ...) gives a ``failed`` trial with the
    one-line reason. An :class:`InputError` is raised: it concerns the
    shared inputs, so every trial would fail the same way.
    """
    from edgekit.pipeline import build

    t0 = time.perf_counter()
    status = "ok"
    try:
        report = build(setup.model, setup.target, calib=setup.calib, eval=setup.eval, train=setup.train, out_dir=build_dir,
                       recipe=recipe, seed=setup.seed, max_eval=setup.max_eval)
        data = report.data
    except InputError as exc:
        if "stage" in exc.message:  # a stage that cannot take this model (e.g. nothing left to factorize)
            return TrialFigures(status="failed", error=exc.one_line(), exit_code=exc.exit_code, seconds=round(time.perf_counter() - t0, 3))
        raise
    except BudgetError as exc:
        report_path = build_dir / "report.json"
        if not report_path.is_file():
            return TrialFigures(status="failed", error=exc.one_line(), exit_code=exc.exit_code, seconds=round(time.perf_counter() - t0, 3))
        data, status = json.loads(report_path.read_text()), "infeasible"
    except EdgekitError as exc:
        return TrialFigures(status="failed", error=exc.one_line(), exit_code=exc.exit_code, seconds=round(time.perf_counter() - t0, 3))
    if "instructions" in setup.objectives and status == "ok":
        from edgekit.compare import run_emulator  # the one way a build gets its emulator section

        t1 = time.perf_counter()
        data = run_emulator(build_dir, data, setup.emulator_inputs, setup.seed, lambda _stage: None)
        data["stages"] = list(data.get("stages", [])) + [{"name": "emulator", "seconds": round(time.perf_counter() - t1, 3)}]
    fig = figures_from_report(data, status, recipe, build_dir)
    if setup.memory == "aot":
        try:
            fig.flash_bytes, fig.ram_bytes, linked_s = _linked(build_dir, setup.target)
        except EdgekitError as exc:
            return TrialFigures(status="failed", error=exc.one_line(), exit_code=exc.exit_code, seconds=round(time.perf_counter() - t0, 3))
        fig.stages.append({"name": "link", "seconds": linked_s})
        fig.status = "ok"  # the budget verdict below is on the linked figures, not the TFLM estimate
    fig.seconds = round(time.perf_counter() - t0, 3)
    if fig.accuracy is None and "accuracy" in setup.objectives:
        fig.status, fig.error, fig.exit_code = "failed", "the build measured no accuracy (the eval data has no labels y)", 2
    elif fig.status == "ok" and any(c > 0 for c in fig.constraints()):
        fig.status = "infeasible"
    return fig


MEMORY_SOURCES = ("tflm", "aot")


def _linked(build_dir: Path, target: str) -> tuple[int, int, float]:
    """Flash and RAM of edgekit's C runtime for the build's model, cross-compiled and linked for ``target``.

    Flash is every section stored in the ELF (code, weights, tables); RAM is
    .data + .bss (arena, I/O buffers) plus the linker's minimum stack. The
    link uses all the memory the emulated machine has, so a model over the
    budget still gets its figures (the budget is judged by the caller).
    """
    from dataclasses import replace

    from edgekit.aot.codegen import generate
    from edgekit.targets import get_target
    from edgekit.toolchain.cross import build_firmware
    from edgekit.toolchain.qemu import machine_info

    t0 = time.perf_counter()
    prof = get_target(target)
    emu = prof.emulator
    if emu is None or emu.flash_origin is None or emu.ram_origin is None:
        raise InputError(f"target {prof.name}: --memory aot needs an [emulator] table with flash_origin and ram_origin", "use --memory tflm")
    regions = machine_info(emu.machine).regions

    def room(origin: int, budget: int) -> int:
        return max([budget] + [r.origin + r.size - origin for r in regions if r.origin <= origin < r.origin + r.size])

    roomy = replace(prof, flash_bytes=room(emu.flash_origin, prof.flash_bytes), ram_bytes=room(emu.ram_origin, prof.ram_bytes))
    work = build_dir / "search-aot"
    generate((build_dir / "model.tflite").read_bytes(), work / "codegen")
    image = build_firmware(work / "codegen", roomy, work / "firmware")
    return image.flash_bytes, image.static_ram_bytes + image.min_stack_bytes, round(time.perf_counter() - t0, 3)
