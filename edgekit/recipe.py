"""Compression recipes: an ordered list of stages with their settings, as data.

A recipe is a TOML file with one ``[[stage]]`` table per stage, applied in
order; every key besides ``name`` is a parameter of that stage's ``Config``::

    description = "50% magnitude pruning"   # optional

    [[stage]]
    name = "prune"
    sparsity = 0.5
    epochs = 2

``Recipe.load`` accepts a bundled name (``edgekit/recipes/<name>.toml``, e.g.
``prune50``) or a path. Optional top-level ``quant`` and ``calibration``
set ``--quant`` / ``--calibration`` for builds with the recipe (a flag given
on the command line wins). Unknown top-level keys, stage names and parameters are
refused with an :class:`~edgekit.errors.InputError` that names the file and
suggests the closest valid name. The CLI's ``--prune``/``--fine-tune-epochs``
map onto a one-stage recipe (:meth:`Recipe.from_cli`).
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError, InputError

TOP_LEVEL_KEYS = ("stage", "description", "quant", "calibration")


def _closest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(options) or 'none'}"


@dataclass(frozen=True)
class StageSpec:
    """One stage of a recipe: the registered stage ``name`` and its ``params`` (the TOML keys besides ``name``)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


def bundled_recipes() -> dict[str, Path]:
    """The recipes shipped with edgekit: name → path of the ``.toml``."""
    root = resources.files("edgekit") / "recipes"
    return {p.name[:-5]: Path(str(p)) for p in root.iterdir() if p.name.endswith(".toml")}


@dataclass(frozen=True)
class Recipe:
    """An ordered tuple of stages; ``source`` says where it came from (a file, a bundled name, or ``cli``)."""

    stages: tuple[StageSpec, ...] = ()
    source: str = "cli"
    description: str = ""
    quant: str | None = None
    calibration: str | None = None

    def __post_init__(self):
        from edgekit.calibrate import Calibration
        from edgekit.compress import stage_config
        from edgekit.convert import check_scheme

        try:
            if self.quant not in (None, "auto"):
                check_scheme(self.quant)
            Calibration.parse(self.calibration)
        except EdgekitError as exc:
            raise type(exc)(f"{self.source}: {exc.message}", exc.hint) from None

        for spec in self.stages:  # checks names and parameters, so a bad recipe fails before any training
            try:
                stage_config(spec)
            except EdgekitError as exc:
                where = "" if self.source == "cli" else f"{self.source}: "
                raise type(exc)(f"{where}{exc.message}", exc.hint) from None

    @property
    def name(self) -> str:
        """A short label: the bundled name or file stem, ``none`` for an empty recipe."""
        if not self.stages and self.quant is None and self.calibration is None:
            return "none"
        if self.source == "cli":
            return "+".join(s.name for s in self.stages)
        return Path(self.source).stem if self.source.endswith(".toml") else self.source

    @classmethod
    def load(cls, name_or_path: str | Path) -> "Recipe":
        """Load a bundled recipe by name, or a ``.toml`` file by path."""
        text = str(name_or_path)
        p = Path(text)
        bundled = bundled_recipes()
        if p.suffix.lower() != ".toml" and not p.exists():
            if text not in bundled:
                raise InputError(f"{text}: no such recipe", f"{_closest(text, sorted(bundled))} Or pass a path to a .toml file")
            return cls._from_file(bundled[text], label=text)
        if not p.is_file():
            raise InputError(f"{p}: recipe file not found", f"bundled recipes: {', '.join(sorted(bundled))}")
        return cls._from_file(p, label=str(p))

    @classmethod
    def _from_file(cls, path: Path, label: str) -> "Recipe":
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{label}: not a valid TOML recipe ({exc})") from None
        return cls.from_dict(data, source=label)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "dict") -> "Recipe":
        """A recipe from the parsed TOML (``{"stage": [{"name": ..., ...}, ...]}``)."""
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                raise InputError(f"{source}: unknown top-level key {key!r}", _closest(key, list(TOP_LEVEL_KEYS)))
        raw = data.get("stage", [])
        if not isinstance(raw, list) or not all(isinstance(s, dict) for s in raw):
            raise InputError(f"{source}: 'stage' must be a list of tables", "write each stage as a [[stage]] table")
        stages = []
        for i, table in enumerate(raw):
            if "name" not in table:
                raise InputError(f"{source}: stage {i + 1} has no name", "add name = \"prune\" (or another stage) to the [[stage]] table")
            params = {k: v for k, v in table.items() if k != "name"}
            stages.append(StageSpec(str(table["name"]), params))
        description = data.get("description", "")
        if not isinstance(description, str):
            raise InputError(f"{source}: description must be a string")
        for key in ("quant", "calibration"):
            if not isinstance(data.get(key, ""), str):
                raise InputError(f"{source}: {key} must be a string")
        return cls(tuple(stages), source=source, description=description, quant=data.get("quant"), calibration=data.get("calibration"))

    @classmethod
    def from_cli(cls, prune: float | None = None, fine_tune_epochs: int = 2) -> "Recipe":
        """The recipe the ``--prune``/``--fine-tune-epochs`` flags describe (empty without ``--prune``)."""
        if prune is None:
            return cls((), source="cli")
        return cls((StageSpec("prune", {"sparsity": float(prune), "epochs": int(fine_tune_epochs)}),), source="cli")

    def to_dict(self) -> dict[str, Any]:
        """What the report records: the source, a label and every stage with its parameters."""
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "stages": [s.to_dict() for s in self.stages],
            "quant": self.quant,
            "calibration": self.calibration,
        }

    def to_toml(self) -> str:
        """The recipe as TOML text that :meth:`load` reads back to an equal recipe."""
        lines = [f"description = {_toml_value(self.description)}"] if self.description else []
        lines += [f"{k} = {_toml_value(getattr(self, k))}" for k in ("quant", "calibration") if getattr(self, k) is not None]
        for s in self.stages:
            lines += ["", "[[stage]]", f"name = {_toml_value(s.name)}"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in s.params.items()]
        return "\n".join(lines).lstrip("\n") + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
