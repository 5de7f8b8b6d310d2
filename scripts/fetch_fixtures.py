#!/usr/bin/env python
"""Fetch and cache the real-CT test fixtures (idempotent; run by `make test` and `make bench`).

- TotalSegmentator 2.18.0 source package (PyPI, Apache-2.0): ``tests/reference_files/`` holds real
  abdominal CTs (example_ct.nii.gz, example_ct_sm.nii.gz, a 20-slice JPEG 2000 DICOM series) and
  TotalSegmentator's adrenal masks.
- The ``pydicom-data`` wheel (PyPI, MIT): real DICOM files with quirks (enhanced CT, big endian,
  RLE, JPEG-LS, JPEG 2000 ...). pydicom's own test files come with the installed pydicom.

Files land in ``var/fixtures/`` (override with ``ADRENAL_FIXTURES``); ``paths()`` gives them to tests.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = Path(os.environ.get("ADRENAL_FIXTURES", REPO / "var" / "fixtures"))
TOTALSEG = "totalsegmentator==2.18.0"
TOTALSEG_DIR = ROOT / "totalsegmentator"
PYDICOM_DATA_DIR = ROOT / "pydicom-data"


def _pip_download(spec: str, dest: Path, *extra: str) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *extra, spec, "-d", str(dest)],
        check=True,
    )
    return next(p for p in dest.iterdir() if p.is_file())


def fetch_totalsegmentator() -> None:
    if (TOTALSEG_DIR / ".complete").exists():
        return
    with tempfile.TemporaryDirectory() as tmp:
        sdist = _pip_download(TOTALSEG, Path(tmp), "--no-binary", ":all:")
        staging = Path(tmp) / "out"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if "/tests/reference_files/" in m.name and m.isfile()]
            for m in members:
                m.name = m.name.split("/tests/reference_files/", 1)[1]
            tar.extractall(staging, members=members, filter="data")
        shutil.rmtree(TOTALSEG_DIR, ignore_errors=True)
        TOTALSEG_DIR.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), TOTALSEG_DIR)
    (TOTALSEG_DIR / ".complete").write_text(TOTALSEG + "\n")


def fetch_pydicom_data() -> None:
    if (PYDICOM_DATA_DIR / ".complete").exists():
        return
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _pip_download("pydicom-data", Path(tmp), "--only-binary", ":all:")
        staging = Path(tmp) / "out"
        staging.mkdir()
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith("data_store/data/") and not name.endswith("/"):
                    (staging / Path(name).name).write_bytes(zf.read(name))
        shutil.rmtree(PYDICOM_DATA_DIR, ignore_errors=True)
        PYDICOM_DATA_DIR.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), PYDICOM_DATA_DIR)
    (PYDICOM_DATA_DIR / ".complete").write_text(wheel.name + "\n")


def paths() -> dict[str, Path]:
    """Where each fixture lies once fetched."""
    import pydicom.data

    return {
        "example_ct": TOTALSEG_DIR / "example_ct.nii.gz",
        "example_ct_sm": TOTALSEG_DIR / "example_ct_sm.nii.gz",
        "example_ct_dicom": TOTALSEG_DIR / "example_ct_dicom",
        "seg_fast": TOTALSEG_DIR / "example_seg_fast",
        "seg_dir": TOTALSEG_DIR,
        "pydicom_data": PYDICOM_DATA_DIR,
        "pydicom_test_files": Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent,
    }


def main() -> None:
    fetch_totalsegmentator()
    fetch_pydicom_data()
    print(f"fixtures ready in {ROOT}")


if __name__ == "__main__":
    main()
