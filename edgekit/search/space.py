"""The search space: recipe stages with distributions instead of values, read from TOML.

A space file has the layout of a recipe (``[[stage]]`` tables, in the order
the stages run) where a parameter may be a distribution::

    [[stage]]
    name = "structured"
    optional = true                                   # the trial decides whether it runs
    ratio = { low = 0.25, high = 0.75, step = 0.125 } # float; int when low, high (and step) are ints
    epochs = 2                                        # a constant

    [[stage]]
    name = "prune"
    group = "sparsity"           # stages of one group are alternatives: at most one runs
    label = "2:4"                # names the alternative (default: the stage name)
    pattern = "2:4"

``{ choices = [...] }`` is categorical, ``log = true`` samples a range on a
log scale. A top-level ``quant = { choices = ["int8", "int16x8"] }`` (or a
constant) adds the activation precision to the search for microcontroller
targets (:meth:`SearchSpace.recipe` with ``mcu=True``); other targets build int8. ``preserve = "auto"`` (stage ``qat``) becomes ``"cluster"`` or
``"sparsity"`` when an earlier stage of the trial clustered or pruned, else
``"none"``. The stage order is the file's, so every trial is a valid recipe;
each stage's parameters are checked against its ``Config`` when the file is
read, so a typo fails before the first trial.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError, InputError
from edgekit.recipe import Recipe, StageSpec

OFF = "off"
QUANT_CHOICES = ("int8", "int16x8")  # the schemes a space may search: both run on TFLM and on edgekit's C runtime
SPACE_KEYS = ("name", "optional", "group", "label")
DIST_KEYS = ("choices", "low", "high", "step", "log")


def default_space_path() -> Path:
    """The bundled default space (``edgekit/search/default_space.toml``)."""
    return Path(str(resources.files("edgekit.search") / "default_space.toml"))


@dataclass(frozen=True)
class Param:
    """One stage parameter: a constant (``value``) or a distribution (``choices`` or ``low``/``high``)."""

    key: str
    value: Any = None
    choices: tuple[Any, ...] | None = None
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False

    @property
    def is_constant(self) -> bool:
        return self.choices is None and self.low is None

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high) + ((self.step,) if self.step is not None else ()))

    def example(self) -> Any:
        """A value from the distribution (its first choice or its low end), to validate the stage."""
        if self.is_constant:
            return self.value
        return self.choices[0] if self.choices is not None else self.low

    def suggest(self, trial, name: str) -> Any:
        """Ask the optuna ``trial`` for this parameter (named ``name`` in the study)."""
        if self.is_constant:
            return self.value
        if self.choices is not None:
            return trial.suggest_categorical(name, list(self.choices))
        if self.is_int:
            return trial.suggest_int(name, self.low, self.high, step=self.step or 1, log=self.log)
        v = trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)
        return round(v, 9) if self.step is not None else v  # 0.85, not 0.8500000000000001, in the recipe


@dataclass(frozen=True)
class SpaceStage:
    """One ``[[stage]]`` of the space: the compression stage, its group and label, its parameters."""

    name: str
    group: str
    label: str
    optional: bool
    params: tuple[Param, ...] = ()


@dataclass(frozen=True)
class SearchSpace:
    """The stages in order; :meth:`recipe` turns a trial's answers into a :class:`Recipe`."""

    stages: tuple[SpaceStage, ...]
    source: str
    description: str = ""
    groups: tuple[str, ...] = field(default=())
    quant: Param | None = None  # the activation precision, searched for microcontroller targets

    @classmethod
    def load(cls, path: str | Path | None = None) -> "SearchSpace":
        """Read a space TOML file (the bundled default without ``path``); :class:`InputError` naming the file when it is wrong."""
        p = default_space_path() if path is None else Path(path)
        label = "default search space" if path is None else str(p)
        if not p.is_file():
            raise InputError(f"{p}: search space file not found", "pass a .toml file with [[stage]] tables, see edgekit/search/default_space.toml")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{label}: not a valid TOML search space ({exc})") from None
        return cls.from_dict(data, label)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> "SearchSpace":
        """A space from parsed TOML; checks every stage against its ``Config``."""
        unknown = [k for k in data if k not in ("stage", "description", "quant")]
        if unknown:
            raise InputError(f"{source}: unknown top-level key {unknown[0]!r}", "valid: stage, description, quant")
        quant = _quant(source, data["quant"]) if "quant" in data else None
        raw = data.get("stage", [])
        if not isinstance(raw, list) or not raw or not all(isinstance(s, dict) for s in raw):
            raise InputError(f"{source}: no [[stage]] tables", "write each stage as a [[stage]] table with a name")
        stages, groups, labels = [], [], set()
        for i, table in enumerate(raw):
            if "name" not in table:
                raise InputError(f"{source}: stage {i + 1} has no name", "add name = \"prune\" (or another stage)")
            name = str(table["name"])
            group = str(table.get("group", name))
            label = str(table.get("label", name))
            if label in labels:
                raise InputError(f"{source}: two stages are labelled {label!r}", "give each alternative its own label = \"...\"")
            labels.add(label)
            if groups and group in groups and groups[-1] != group:
                raise InputError(f"{source}: the stages of group {group!r} are not next to each other", "alternatives must be consecutive [[stage]] tables")
            if group not in groups:
                groups.append(group)
            params = tuple(_param(source, label, k, v) for k, v in table.items() if k not in SPACE_KEYS)
            stage = SpaceStage(name, group, label, bool(table.get("optional", False)), params)
            _validate(source, stage)
            stages.append(stage)
        description = data.get("description", "")
        return cls(tuple(stages), source=source, description=str(description), groups=tuple(groups), quant=quant)

    def alternatives(self, group: str) -> list[SpaceStage]:
        return [s for s in self.stages if s.group == group]

    def group_choices(self, group: str) -> list[str]:
        """The labels a trial chooses from for ``group`` (with ``off`` when a stage of it is optional)."""
        alts = self.alternatives(group)
        return ([OFF] if any(s.optional for s in alts) else []) + [s.label for s in alts]

    def recipe(self, trial, source: str, *, mcu: bool = False) -> Recipe:
        """The recipe of one optuna trial: for each group, the chosen stage with its sampled parameters;
        for a microcontroller target (``mcu``), also the activation precision when the space has ``quant``."""
        specs: list[StageSpec] = []
        for group in self.groups:
            choices = self.group_choices(group)
            picked = choices[0] if len(choices) == 1 else trial.suggest_categorical(group, choices)
            if picked == OFF:
                continue
            stage = next(s for s in self.alternatives(group) if s.label == picked)
            params = {p.key: p.suggest(trial, f"{stage.label}.{p.key}") for p in stage.params}
            specs.append(StageSpec(stage.name, _resolve_auto(stage.name, params, specs)))
        quant = self.quant.suggest(trial, "quant") if self.quant is not None and mcu else None
        return Recipe(tuple(specs), source=source, description=f"found by edgekit search ({source})",
                      quant=None if quant == "int8" else quant)

    def baseline_params(self) -> dict[str, Any] | None:
        """The optuna params of the plain int8 trial (every group off); None when a group cannot be off."""
        params = {}
        for group in self.groups:
            choices = self.group_choices(group)
            if OFF not in choices:
                return None
            params[group] = OFF
        if self.quant is not None and not self.quant.is_constant:
            params["quant"] = "int8"  # _quant requires int8 among the choices
        return params


def _param(source: str, label: str, key: str, v: Any) -> Param:
    if not isinstance(v, dict):
        return Param(key, value=v)
    bad = [k for k in v if k not in DIST_KEYS]
    if bad:
        raise InputError(f"{source}: stage {label}: {key} has unknown key {bad[0]!r}", f"a distribution has {', '.join(DIST_KEYS)}")
    if "choices" in v:
        if not isinstance(v["choices"], list) or not v["choices"]:
            raise InputError(f"{source}: stage {label}: {key}.choices must be a non-empty list")
        return Param(key, choices=tuple(v["choices"]))
    if "low" not in v or "high" not in v:
        raise InputError(f"{source}: stage {label}: {key} needs low and high (or choices)")
    lo, hi = v["low"], v["high"]
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (lo, hi)) or lo > hi:
        raise InputError(f"{source}: stage {label}: {key} needs numbers low <= high, not {lo!r}..{hi!r}")
    return Param(key, low=lo, high=hi, step=v.get("step"), log=bool(v.get("log", False)))


def _quant(source: str, v: Any) -> Param:
    """The top-level ``quant``: a scheme of QUANT_CHOICES or ``{ choices = [...] }`` of them, int8 among the choices."""
    p = _param(source, "quant", "quant", v)
    values = [p.value] if p.is_constant else list(p.choices or ())
    if not values or p.low is not None or any(q not in QUANT_CHOICES for q in values):
        raise InputError(f"{source}: quant {v!r}: a search space takes {' or '.join(QUANT_CHOICES)}",
                         'write quant = { choices = ["int8", "int16x8"] } or one of them')
    if not p.is_constant and "int8" not in values:
        raise InputError(f"{source}: quant choices {values} lack int8", "the plain int8 build seeds every study")
    return p


def _resolve_auto(name: str, params: dict[str, Any], before: list[StageSpec]) -> dict[str, Any]:
    if name == "qat" and params.get("preserve") == "auto":
        done = [s.name for s in before]
        params["preserve"] = "cluster" if "cluster" in done else "sparsity" if "prune" in done else "none"
    return params


def _validate(source: str, stage: SpaceStage) -> None:
    """Check the stage's parameter names and every choice (and range end) against its ``Config``."""
    from edgekit.compress import stage_config

    base = {p.key: p.example() for p in stage.params}
    base = _resolve_auto(stage.name, dict(base), [])
    probes = [base]
    for p in stage.params:
        for v in (p.choices or ()) + ((p.low, p.high) if p.low is not None else ()):
            probes.append({**base, p.key: v})
    for params in probes:
        try:
            stage_config(StageSpec(stage.name, params))
        except EdgekitError as exc:
            raise InputError(f"{source}: stage {stage.label}: {exc.message}", exc.hint) from None
