"""One DICOM series read from a folder: the whole pipeline (``scan_files`` -> ``read_header`` -> ``group_series``
-> ``load_series``) for code that holds a folder of one series (fixtures, atlas building, benchmarks)."""
from __future__ import annotations

import os

from ..volume import Volume
from .grouping import group_series
from .headers import read_header
from .scan import scan_files
from .stack import SeriesError, load_series


def load_folder(folder: str | os.PathLike) -> Volume:
    """The volume of the one series in ``folder`` (int16 HU ``[k, j, i]``, affine voxel -> LPS mm). Raises
    SeriesError when the folder holds no series or several, or when that series cannot be loaded (as
    ``load_series``)."""
    groups = group_series([read_header(p) for p in scan_files(folder)])
    if len(groups) != 1:
        raise SeriesError(f"{os.fspath(folder)} holds {len(groups)} series, not one")
    return load_series(groups[0]).volume
