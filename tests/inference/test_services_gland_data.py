"""The per-gland training data read from the store (``inference.services.gland_data``)."""
from __future__ import annotations

import pytest

from inference.ml.geometry import Box
from inference.ml.presets import preset_config
from inference.ml.volume import UnreadableVolume
from inference.services.gland_data import GlandScan, scan_sample


def test_an_unreadable_volume_names_its_scan_and_patient(tmp_path):
    """A fold that meets a damaged stored volume fails naming the scan and its patient: before, the run's and
    fold's message named only the file's hashed name ('the stored file 3723….nii.gz cannot be read; re-import the
    scan'), which a lead cannot tell apart from the dataset's other scans."""
    path = tmp_path / "3723167891d393a75cd5a9ab.nii.gz"
    path.write_bytes(b"\x00garbage, not a gzip stream" * 10)
    boxes = {"R": Box((-60.0, -10.0, -40.0), (-20.0, 30.0, 0.0)), "L": Box((20.0, -10.0, -40.0), (60.0, 30.0, 0.0))}
    scan = GlandScan(7, "1.2.3", "P0042", 1, "R", boxes, path)
    with pytest.raises(UnreadableVolume) as exc:
        scan_sample(scan, preset_config("fast"))
    message = str(exc.value)
    assert message.startswith("scan #7 of patient P0042: the stored file 3723167891d393a75cd5a9ab.nii.gz")
    assert "re-import the scan" in message and str(tmp_path) not in message
