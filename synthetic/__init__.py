"""Synthetic abdominal CT for development, tests and the demo (not part of the runtime core): procedural
anatomy with adrenal glands and lesions, written as real DICOM.

- ``make_patient(seed, abnormal=..., ...)`` -> ``SyntheticScan`` in memory (no I/O);
- ``make_cohort(out_dir, patients, abnormal_fraction, seed, ...)`` writes the raw DICOM layout and
  ``ground_truth.csv``;
- ``read_ground_truth(csv_path)`` -> per-series rows with ``Box`` objects.
"""
from .acquisition import COVERAGE, PROFILES
from .scan import LesionTruth, SyntheticScan, Truth, make_patient

__all__ = ["COVERAGE", "PROFILES", "LesionTruth", "SyntheticScan", "Truth", "make_patient"]
from .cohort import make_cohort  # noqa: E402
from .truth import TruthRow, read_ground_truth  # noqa: E402

__all__ += ["make_cohort", "read_ground_truth", "TruthRow"]
