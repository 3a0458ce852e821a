"""What a search found: every trial as a row, the Pareto front, the pick, and the files.

Outputs in the search folder: ``search.json`` and ``search.md`` (every trial
with its recipe, figures, per-stage seconds and status), ``front.png`` and
``front.html`` (accuracy against flash and against RAM, budgets as lines; see
:mod:`edgekit.search.plots`) and ``best.toml``, the picked recipe, which
``edgekit build --recipe best.toml --seed S`` rebuilds. No timestamps: the
same study gives the same files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.fmt import fmt_int, fmt_num, fmt_pct
from edgekit.errors import BudgetError, InputError
from edgekit.recipe import Recipe
from edgekit.search.objective import OBJECTIVES

PICKS = ("accuracy", "flash", "ram", "instructions")


@dataclass
class TrialRow:
    """One trial of the study, as the outputs show it."""

    number: int
    state: str  # optuna's: COMPLETE, FAIL, RUNNING, WAITING
    status: str  # ok | infeasible | failed | interrupted | running | waiting
    recipe: dict[str, Any] | None
    figures: dict[str, Any]
    seeded: str | None = None
    retry_of: int | None = None
    worker: str | None = None  # host:pid of the process that ran it
    duplicate_of: int | None = None  # same recipe as this earlier trial, whose figures it reuses
    on_front: bool = False

    def fig(self, key: str) -> Any:
        return self.figures.get(key)


@dataclass
class SearchResult:
    """The rows, the front and the pick of one study; :meth:`write` puts them in the search folder."""

    model: str
    target: str
    study: str
    seed: int
    objectives: list[str]
    flash_budget_bytes: int | None
    ram_budget_bytes: int | None
    rows: list[TrialRow] = field(default_factory=list)
    pick: str = "accuracy"
    best: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.status] = out.get(r.status, 0) + 1
        return dict(sorted(out.items()))

    @property
    def front(self) -> list[TrialRow]:
        return [r for r in self.rows if r.on_front]

    def best_row(self) -> TrialRow | None:
        return next((r for r in self.rows if r.number == self.best), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "target": self.target, "study": self.study, "seed": self.seed, "objectives": self.objectives,
            "budget": {"flash_bytes": self.flash_budget_bytes, "ram_bytes": self.ram_budget_bytes},
            "counts": self.counts, "pick": self.pick, "best_trial": self.best, "front": [r.number for r in self.front],
            "trials": [asdict(r) for r in self.rows], "outputs": self.outputs,
        }

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and cells shared by search.md and the CLI."""
        head = ["trial", "recipe", "status", "accuracy", "flash B", "RAM B", "instr/inf", "seconds", "note"]
        rows = []
        for r in self.rows:
            note = r.fig("error") or ("front" if r.on_front else "")
            if r.number == self.best:
                note = f"best ({self.pick})"
            if r.duplicate_of is not None:
                note = (note + "; " if note else "") + f"same recipe as {r.duplicate_of}"
            if r.retry_of is not None:
                note = (note + "; " if note else "") + f"retry of {r.retry_of}"
            rows.append([str(r.number), _recipe_label(r), r.status, fmt_pct(r.fig("accuracy")), fmt_int(r.fig("flash_bytes")),
                         fmt_int(r.fig("ram_bytes")), fmt_int(r.fig("instructions_per_inference")), fmt_num(r.fig("seconds"), 1), note])
        return head, rows

    def to_markdown(self) -> str:
        head, rows = self.table()
        lines = [f"# edgekit search: {Path(self.model).name} on {self.target}", "",
                 f"Study `{self.study}`, seed {self.seed}, objectives {', '.join(self.objectives)}; "
                 f"budget: flash {fmt_int(self.flash_budget_bytes)} B, RAM {fmt_int(self.ram_budget_bytes)} B. "
                 "Every figure is read from the trial's own build (`trials/NNNN/report.json`): accuracy on the deployed runtime, "
                 "flash and RAM from the build's memory section. Infeasible trials (over budget) are never on the front.", "",
                 "Trials: " + ", ".join(f"{v} {k}" for k, v in self.counts.items()), ""]
        best = self.best_row()
        if best is not None:
            lines += [f"Best by {self.pick}: trial {best.number} (`best.toml`), rebuild with "
                      f"`edgekit build MODEL --target {self.target} --recipe best.toml --seed {self.seed}` and the same data.", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        if "plot" in self.outputs:
            lines += ["", f"![accuracy against flash and RAM]({self.outputs['plot']})"]
        return "\n".join(lines) + "\n"

    def best_recipe(self) -> Recipe | None:
        best = self.best_row()
        if best is None or best.recipe is None:
            return None
        rec = Recipe.from_dict({"stage": best.recipe["stages"]}, source=f"trial-{best.number}")
        f = best.figures
        desc = (f"edgekit search trial {best.number} (best by {self.pick}) on {self.target}: accuracy {fmt_pct(f.get('accuracy'))}, "
                f"flash {fmt_int(f.get('flash_bytes'))} B, RAM {fmt_int(f.get('ram_bytes'))} B; built with --seed {self.seed}")
        return Recipe(rec.stages, source=rec.source, description=desc)

    def write(self, folder: Path) -> None:
        """Write front.png/front.html, best.toml (when a trial fits), search.json and search.md into ``folder``."""
        from edgekit.search.plots import front_html, front_png

        if front_png(self, folder / "front.png"):
            self.outputs["plot"] = "front.png"
        (folder / "front.html").write_text(front_html(self))
        self.outputs["html"] = "front.html"
        rec = self.best_recipe()
        if rec is not None:
            (folder / "best.toml").write_text(rec.to_toml())
            self.outputs["best"] = "best.toml"
        elif (folder / "best.toml").exists():
            (folder / "best.toml").unlink()
        self.outputs.update({"json": "search.json", "markdown": "search.md"})
        (folder / "search.json").write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        (folder / "search.md").write_text(self.to_markdown())


def collect(study, model: str, target, seed: int, objectives: list[str], pick: str = "accuracy") -> SearchResult:
    """The rows of ``study``, its feasible Pareto front (optuna's ``best_trials``) and the pick."""
    from optuna.trial import TrialState

    if pick not in PICKS or pick not in objectives:
        raise InputError(f"--pick {pick!r}: not one of the objectives", f"choose from {', '.join(objectives)}")
    front = {t.number for t in study.best_trials}
    res = SearchResult(model=model, target=target.name, study=study.study_name, seed=seed, objectives=list(objectives),
                       flash_budget_bytes=target.flash_bytes, ram_budget_bytes=target.ram_bytes, pick=pick)
    for t in study.get_trials(deepcopy=False):
        status = t.user_attrs.get("status")
        if t.state == TrialState.RUNNING:
            status = "running"
        elif t.state == TrialState.WAITING:
            status = "waiting"
        elif status is None or (t.state == TrialState.FAIL and status != "failed"):
            status = "interrupted"
        res.rows.append(TrialRow(number=t.number, state=t.state.name, status=status, recipe=t.user_attrs.get("recipe"),
                                 figures=dict(t.user_attrs.get("figures", {})), seeded=t.user_attrs.get("seeded"),
                                 retry_of=t.user_attrs.get("retry_of"), worker=t.user_attrs.get("worker"), duplicate_of=t.user_attrs.get("duplicate_of"),
                                 on_front=t.number in front and status == "ok" and "duplicate_of" not in t.user_attrs))
    res.best = _pick(res, pick)
    return res


def _pick(res: SearchResult, pick: str) -> int | None:
    """The feasible trial best by ``pick`` (ties: the more accurate, then the lower number)."""
    key, direction = OBJECTIVES[pick]
    ok = [r for r in res.rows if r.status == "ok" and r.fig(key) is not None]
    if not ok:
        return None
    sign = -1 if direction == "maximize" else 1
    return min(ok, key=lambda r: (sign * r.fig(key), -(r.fig("accuracy") or 0), r.number)).number


def require_fit(res: SearchResult) -> None:
    """Raise :class:`BudgetError` (exit 3) when no trial fits the budget."""
    if res.best is None:
        raise BudgetError(f"no trial of study {res.study!r} fits {res.target}'s budget ({res.counts})",
                          "run more --trials, widen the --space, or choose a larger target")


def _recipe_label(r: TrialRow) -> str:
    if r.recipe is None:
        return "?"
    if r.seeded:
        return r.seeded
    parts = []
    for s in r.recipe.get("stages", []):
        args = ",".join(f"{k}={v}" for k, v in s.items() if k != "name" and k not in ("epochs",))
        parts.append(f"{s['name']}({args})" if args else s["name"])
    return " → ".join(parts) or "none"
