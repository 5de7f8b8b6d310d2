"""The fold ensemble of a run, loaded once per process (a worker keeps it warm between scans)."""
from __future__ import annotations

import threading

from inference.ml.training import load_ensemble

from ..models import TrainingRun
from .runs import weight_paths

_LOCK = threading.Lock()
_ENSEMBLES: dict[tuple, object] = {}


def ensemble_for(run: TrainingRun):
    """The run's ensemble (``predict(images [N, 3, H, W]) -> [N, n_folds]`` probabilities); reloaded when a
    weights file changed. Raises ValueError when weights are missing."""
    paths = weight_paths(run)
    key = (run.pk, tuple((str(p), p.stat().st_mtime) for p in paths))
    with _LOCK:
        if key not in _ENSEMBLES:
            _ENSEMBLES.clear()  # one model in memory at a time
            _ENSEMBLES[key] = load_ensemble(paths, run.config or {})
        return _ENSEMBLES[key]
