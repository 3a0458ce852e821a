"""Run (or resume) a search: an optuna study whose trials are real edgekit builds.

- Multi-objective TPE (or NSGA-II) with the target's budget as a
  constraint (``trial.set_constraint``): infeasible trials stay in the study, never in the front.
- A new study is seeded with the plain int8 build (every stage off) and the
  bundled recipes ``edgekit compare`` runs by default, via ``enqueue_trial``.
- ``n_trials`` is the study's total: re-running the same command resumes it.
  Finished trials count (complete or failed with an edgekit error); a trial
  cut short (SIGINT, a killed worker) is re-queued once with the same
  parameters and counted when its retry finishes, so none is lost or counted twice.
- A trial whose recipe an earlier trial already built (samplers repeat
  points of a discrete space) reuses that build's figures instead of building
  again; it is marked ``duplicate_of``.
- ``workers`` > 1 starts worker processes (spawned: TensorFlow does not
  survive a fork) on the same storage.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from edgekit.errors import EdgekitError, InputError
from edgekit.recipe import Recipe
from edgekit.search.objective import OBJECTIVES, TrialFigures, TrialSetup, run_trial
from edgekit.search.space import SearchSpace
from edgekit.search.storage import is_dead_local_worker, open_storage, worker_id

SAMPLERS = ("tpe", "nsga2")


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search (and each of its worker processes) needs."""

    setup: TrialSetup
    n_trials: int
    space: str | None = None
    timeout: float | None = None
    workers: int = 1
    storage: str | None = None
    study_name: str = "edgekit-search"
    sampler: str = "tpe"
    seed_recipes: tuple[str, ...] = ()


class TrialFailed(Exception):
    """Raised inside the objective for a failed build: optuna records the trial as FAIL and goes on."""


def _sampler(cfg: SearchConfig, index: int):
    import optuna

    seed = cfg.setup.seed + index  # each worker its own stream; one worker: reproducible with --seed
    if cfg.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, cfg.n_trials // 2)))
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=min(10, max(2, cfg.n_trials // 3)))


def load_study(cfg: SearchConfig, index: int = 0, create: bool = False):
    """The study on ``cfg.storage`` (created when ``create``), with this worker's sampler."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the library does not print (optuna logs failed trials as warnings with tracebacks); the CLI shows progress
    storage = open_storage(cfg.storage, Path(cfg.setup.out_dir), cfg.workers)
    directions = [OBJECTIVES[o][1] for o in cfg.setup.objectives]
    if create:
        study = optuna.create_study(storage=storage, study_name=cfg.study_name, directions=directions, sampler=_sampler(cfg, index), load_if_exists=True)
        if [d.name.lower() for d in study.directions] != directions:
            raise InputError(f"study {cfg.study_name!r} exists with other objectives", "use the same --objectives, another --study, or another --out")
        return study
    return optuna.load_study(study_name=cfg.study_name, storage=storage, sampler=_sampler(cfg, index))


def counted(trial) -> bool:
    """A trial that counts towards ``n_trials``: complete, or failed with an edgekit error."""
    from optuna.trial import TrialState

    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.FAIL and trial.user_attrs.get("status") == "failed")


def _prepare(study, cfg: SearchConfig, space: SearchSpace) -> None:
    """Seed a new study; on resume, fail dead local workers' trials and re-queue every interrupted trial once."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if not trials:
        base = space.baseline_params()
        if base is not None:
            study.enqueue_trial(base, user_attrs={"seeded": "none"})
        for name in cfg.seed_recipes:
            if name != "none" or base is None:
                study.enqueue_trial({}, user_attrs={"seeded": name, "fixed_recipe": name})
        return
    for t in trials:
        if t.state == TrialState.RUNNING and is_dead_local_worker(t.user_attrs.get("worker")):
            # optuna has no public call to fail another process's trial; this is what its own stale-trial check does
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        if t.state == TrialState.FAIL and not counted(t) and t.number not in retried:
            attrs = {k: v for k, v in t.user_attrs.items() if k in ("seeded", "fixed_recipe")}
            study.enqueue_trial(dict(t.params), user_attrs={**attrs, "retry_of": t.number})


def _objective(cfg: SearchConfig, space: SearchSpace):
    from edgekit.targets import get_target

    mcu = get_target(cfg.setup.target).is_mcu  # int16x8 is searched for microcontrollers only

    def objective(trial) -> list[float]:
        trial.set_user_attr("worker", worker_id())
        fixed = trial.user_attrs.get("fixed_recipe")
        recipe = Recipe.load(fixed) if fixed else space.recipe(trial, source=f"trial-{trial.number}", mcu=mcu)
        trial.set_user_attr("recipe", recipe.to_dict())
        earlier = _same_recipe(trial.study, recipe)
        if earlier is not None:  # same recipe, same seed: the build would give the same figures
            trial.set_user_attr("duplicate_of", earlier.number)
            fig = TrialFigures(**{**earlier.user_attrs["figures"], "seconds": 0.0, "stages": []})
        else:
            try:
                fig = run_trial(cfg.setup, recipe, Path(cfg.setup.out_dir) / "trials" / f"{trial.number:04d}")
            except Exception:
                # Keras re-wraps an exception raised inside a layer's call (a Ctrl-C landing
                # there surfaced as "TypeError: Exception encountered when calling Flatten.call()"):
                # after a Ctrl-C, whatever the trial raised is the interrupt.
                if _interrupted.is_set():
                    raise KeyboardInterrupt from None
                raise
        trial.set_user_attr("figures", fig.to_dict())
        trial.set_user_attr("status", fig.status)
        if fig.status == "failed":
            raise TrialFailed(fig.error)
        for key, value in zip(("flash_over_budget", "ram_over_budget"), fig.constraints()):
            trial.set_constraint(key, value)  # <= 0: fits; the samplers and the front honour it
        return fig.values(cfg.setup.objectives)

    return objective


def _same_recipe(study, recipe: Recipe):
    """An earlier finished trial (not itself a duplicate) that built exactly ``recipe``'s stages, or None."""
    stages = recipe.to_dict()["stages"]
    for t in study.get_trials(deepcopy=False):
        if counted(t) and "duplicate_of" not in t.user_attrs and "figures" in t.user_attrs and (t.user_attrs.get("recipe") or {}).get("stages") == stages:
            return t
    return None


_interrupted = threading.Event()


@contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt as usual and also sets a flag the loop checks between trials.

    Python drops a KeyboardInterrupt raised inside a finalizer or weakref
    callback (TensorFlow runs many); the flag still stops the search after
    the current trial, which then finishes and counts normally.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum, frame):
        _interrupted.set()
        raise KeyboardInterrupt

    def unraisable(info) -> None:  # the dropped interrupt: no "Exception ignored" traceback on stderr
        if not isinstance(info.exc_value, KeyboardInterrupt):
            previous_hook(info)

    _interrupted.clear()
    previous, previous_hook = signal.signal(signal.SIGINT, on_sigint), sys.unraisablehook
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook


def _loop(study, cfg: SearchConfig, space: SearchSpace, deadline: float | None, after_trial: Callable[[object], None] | None) -> None:
    from optuna.trial import TrialState

    objective = _objective(cfg, space)
    while deadline is None or time.monotonic() < deadline:
        if _interrupted.is_set():
            raise KeyboardInterrupt
        trials = study.get_trials(deepcopy=False)
        busy = sum(1 for t in trials if counted(t) or t.state == TrialState.RUNNING)
        if busy >= cfg.n_trials:
            return
        study.optimize(objective, n_trials=1, catch=(TrialFailed,))
        if after_trial:
            after_trial(study)


def _worker_main(cfg: SearchConfig, index: int) -> None:
    """A worker process: the same loop on the same study; Ctrl-C ends it like the parent."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    space = SearchSpace.load(cfg.space)
    deadline = None if cfg.timeout is None else time.monotonic() + cfg.timeout
    try:
        with _interruptible():
            _loop(load_study(cfg, index), cfg, space, deadline, None)
    except KeyboardInterrupt:
        pass


def run_search(cfg: SearchConfig, after_trial: Callable[[object], None] | None = None):
    """Run the study to ``cfg.n_trials`` finished trials (or ``cfg.timeout`` seconds) and return it.

    ``after_trial(study)`` is called in this process after each of its own
    trials (the CLI's progress display). Raises :class:`InputError` for bad
    inputs, space or storage before any trial runs.
    """
    if cfg.n_trials < 1:
        raise InputError(f"--trials must be >= 1, not {cfg.n_trials}")
    if cfg.workers < 1:
        raise InputError(f"--workers must be >= 1, not {cfg.workers}")
    if cfg.sampler not in SAMPLERS:
        raise InputError(f"--sampler {cfg.sampler!r}: unknown", f"valid: {', '.join(SAMPLERS)}")
    space = SearchSpace.load(cfg.space)
    for name in cfg.seed_recipes:
        Recipe.load(name)  # a bad name fails now, not in a trial
    Path(cfg.setup.out_dir).mkdir(parents=True, exist_ok=True)
    study = load_study(cfg, 0, create=True)
    _prepare(study, cfg, space)
    deadline = None if cfg.timeout is None else time.monotonic() + cfg.timeout
    procs = []
    ctx = multiprocessing.get_context("spawn")
    for i in range(1, cfg.workers):
        p = ctx.Process(target=_worker_main, args=(cfg, i), daemon=False)
        p.start()
        procs.append(p)
    try:
        with _interruptible():
            _loop(study, cfg, space, deadline, after_trial)
    except EdgekitError:
        _stop(procs)
        raise
    except KeyboardInterrupt:
        _stop(procs)
        raise
    for p in procs:
        p.join()
    return study


def _stop(procs) -> None:
    """Interrupt the workers (their running trials are recorded as interrupted) and wait for them."""
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signal.SIGINT)
    for p in procs:
        p.join(timeout=60)
        if p.is_alive():
            p.terminate()
