"""``edgekit search``: a multi-objective search over compression recipes, each trial a real build."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from edgekit.compare import DEFAULT_RECIPES


@click.command(name="search")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "-t", required=True, help="Board profile name or path to a .toml profile; its flash/RAM budget is a hard constraint.")
@click.option("--train", type=click.Path(path_type=Path), help="Training data with labels, for the stages that fine-tune.")
@click.option("--calib", type=click.Path(path_type=Path), help="Calibration inputs for int8 quantization. Defaults to --eval.")
@click.option("--eval", "eval_", type=click.Path(path_type=Path), required=True, help="Evaluation data (.npz with x and labels y): accuracy on the deployed runtime.")
@click.option("--trials", type=int, default=20, show_default=True, help="Finished trials in the study (a re-run resumes up to this total).")
@click.option("--timeout", type=float, help="Stop starting new trials after this many seconds.")
@click.option("--workers", type=int, default=1, show_default=True, help="Processes running trials on the same study.")
@click.option("--storage", help="Database URL (postgresql://...) to share the study between machines [default: OUT/study.journal].")
@click.option("--study", "study_name", default="edgekit-search", show_default=True, help="Study name in the storage.")
@click.option("--objectives", default="accuracy,flash,ram", show_default=True, help="Comma-separated: accuracy, flash, ram, instructions (QEMU, microcontroller targets).")
@click.option("--memory", type=click.Choice(["tflm", "aot"]), default="tflm", show_default=True,
              help="Flash/RAM scored: tflm = the build's figures (.tflite + TFLM code estimate, measured arena); aot = edgekit's C runtime cross-compiled and linked for the target.")
@click.option("--space", type=click.Path(path_type=Path), help="Search space TOML [default: the bundled edgekit/search/default_space.toml].")
@click.option("--seed-recipes", default=",".join(DEFAULT_RECIPES), show_default=True, help="Bundled recipes run as the first trials ('' for none).")
@click.option("--sampler", type=click.Choice(["tpe", "nsga2"]), default="tpe", show_default=True, help="Optuna sampler (both honour the budget constraints).")
@click.option("--pick", type=click.Choice(["accuracy", "flash", "ram", "instructions"]), default="accuracy", show_default=True, help="Which objective best.toml is best at (among trials that fit).")
@click.option("--max-eval", type=int, help="Verify each trial on at most this many eval samples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler and of every build.")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Output folder [default: edgekit-out/<model>-<target>-search].")
def command(model: Path, target: str, train, calib, eval_, trials: int, timeout, workers: int, storage, study_name: str, objectives: str,
            memory: str, space, seed_recipes: str, sampler: str, pick: str, max_eval, seed: int, out) -> None:
    """Search compression recipes for MODEL under TARGET's budget; every trial is a real `edgekit build`.

    Writes search.md, search.json, front.png, front.html, best.toml and one
    build folder per trial (trials/NNNN/). Re-running the same command resumes
    the study. Exits 3 when no trial fits the budget.

    \b
    Example:
      edgekit search model.keras --target cortex-m4 --train train.npz --calib calib.npz \\
          --eval eval.npz --trials 20 --workers 2
    """
    from edgekit.errors import InputError
    from edgekit.search import SearchConfig, TrialSetup, collect, parse_objectives, require_fit, run_search
    from edgekit.targets import get_target

    prof = get_target(target)
    objs = parse_objectives(objectives)
    if "instructions" in objs and not prof.is_mcu:
        raise InputError(f"--objectives instructions needs a microcontroller target; {prof.name} is not one")
    if memory == "aot" and not prof.is_mcu:
        raise InputError(f"--memory aot is for microcontroller targets; {prof.name} is not one")
    if pick not in objs:
        raise InputError(f"--pick {pick}: not among --objectives {objectives}")
    for p in (model, train, calib, eval_, space):
        if p is not None and not Path(p).exists():
            raise InputError(f"{p}: not found")
    folder = out if out is not None else Path("edgekit-out") / f"{model.stem}-{prof.name}-search"
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not any((folder / n).exists() for n in ("study.journal", "search.json")))):
        raise InputError(f"{folder}: exists and is not an edgekit search folder; refusing to write into it", "choose another --out")
    setup = TrialSetup(model=str(model), target=str(target), calib=None if calib is None else str(calib), eval=str(eval_),
                       train=None if train is None else str(train), out_dir=str(folder), seed=seed, objectives=tuple(objs), max_eval=max_eval, memory=memory)
    cfg = SearchConfig(setup=setup, n_trials=trials, space=None if space is None else str(space), timeout=timeout, workers=workers,
                       storage=storage, study_name=study_name, sampler=sampler,
                       seed_recipes=tuple(s.strip() for s in seed_recipes.split(",") if s.strip()))

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    with Progress(TextColumn("edgekit search"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                  TextColumn("{task.fields[best]}"), console=console, disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task("trials", total=trials, best="")

        def after_trial(study) -> None:
            res = collect(study, str(model), prof, seed, objs, pick)
            done = sum(res.counts.get(k, 0) for k in ("ok", "infeasible", "failed"))
            best = res.best_row()
            best_txt = f"best {100 * best.fig('accuracy'):.2f} %, {best.fig('flash_bytes'):,} B flash (trial {best.number})" if best else "nothing fits yet"
            progress.update(task, completed=done, best=best_txt)
            if not sys.stderr.isatty():
                click.echo(f"edgekit: search: {done}/{trials} trials, {best_txt}", err=True)

        t0 = time.monotonic()
        study = run_search(cfg, after_trial=after_trial)
    res = collect(study, str(model), prof, seed, objs, pick)
    res.write(folder)
    head, rows = res.table()
    from rich.table import Table

    table = Table(title=f"edgekit search → {res.target} ({time.monotonic() - t0:.0f} s)")
    for h in head:
        table.add_column(h, justify="left" if h in ("recipe", "status", "note") else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    click.echo(f"Wrote {folder}/ ({', '.join(res.outputs.values())}, trials/NNNN/ per trial)")
    require_fit(res)
