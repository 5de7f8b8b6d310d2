"""Fixtures of the synthetic-cohort area, usable by every test module:

- ``synthetic_cohort`` (session): a tiny cohort on disk, ``{"path": Path, "rows": [TruthRow], "csv": Path}``
  (6 patients, half abnormal, profile "tiny": 256x256, 5 mm slices, upper abdomen; with previews);
- ``synthetic_patient``: ``synthetic_patient(seed, abnormal=True, **kw)`` -> ``SyntheticScan`` (tiny profile
  unless ``profile=...`` is given).
"""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_cohort(tmp_path_factory) -> dict:
    from synthetic import make_cohort

    out = Path(tmp_path_factory.mktemp("synthetic")) / "cohort"
    rows = make_cohort(out, 6, 0.5, 11, preview=True, profile="tiny", workers=1)
    return {"path": out, "rows": rows, "csv": out / "ground_truth.csv"}


@pytest.fixture
def synthetic_patient():
    from synthetic import make_patient

    def make(seed: int, abnormal: bool = True, **kw):
        kw.setdefault("profile", "tiny")
        return make_patient(seed, abnormal=abnormal, **kw)

    return make
