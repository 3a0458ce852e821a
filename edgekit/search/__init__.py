"""``edgekit search``: find the compression recipe that fits the board, scored on measured builds.

space.py (TOML space → Recipe per trial) → objective.py (one trial = one
``edgekit build``) → study.py (optuna study, workers, resume) with storage.py
(journal file or database) → results.py (rows, front, pick, files) and
plots.py (front.png, front.html).
"""

from edgekit.search.objective import OBJECTIVES, TrialSetup, parse_objectives
from edgekit.search.results import SearchResult, collect, require_fit
from edgekit.search.space import SearchSpace
from edgekit.search.study import SearchConfig, run_search

__all__ = ["OBJECTIVES", "SearchConfig", "SearchResult", "SearchSpace", "TrialSetup", "collect", "parse_objectives", "require_fit", "run_search"]
