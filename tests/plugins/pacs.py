"""Fixtures of the DICOM node: a real PACS (Debian's Orthanc, started as a plain process with a JSON config on
free local ports, with the app as a modality), the node's listener as a subprocess, a study of real CT written
as DICOM, and a tiny promoted model.

``Orthanc(workdir, modalities={...}).start()`` speaks REST (``upload``, ``store_to``, ``job``, ``study``,
``series_of``, ``instance_file``) and DIMSE on ``dicom_port``; ``Listener(env).start()`` runs
``manage.py dicom_listener`` on the test database."""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.uid import CTImageStorage, generate_uid

from tests.conftest import REPO, database_url_for_subprocess

ORTHANC_EXE = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def _die_with_parent() -> None:
    """In the child before exec: be sent SIGTERM when the test process dies (Linux PR_SET_PDEATHSIG), so a
    killed test run leaves no Orthanc or listener behind."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """One Orthanc server: its storage and log in ``workdir``, HTTP and DICOM on free local ports (or given)."""

    def __init__(self, workdir: Path, *, aet: str = "ORTHANC", modalities: dict | None = None,
                 dicom_port: int | None = None, dicomweb: bool = True):
        self.workdir, self.aet = Path(workdir), aet
        self.http_port, self.dicom_port = free_port(), dicom_port or free_port()
        self.modalities = modalities or {}
        self.dicomweb = dicomweb and Path(DICOMWEB_PLUGIN).exists()
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.http_port}"

    def config(self) -> dict:
        storage = str(self.workdir / "db")
        cfg = {
            "Name": self.aet, "DicomAet": self.aet, "DicomPort": self.dicom_port, "HttpPort": self.http_port,
            "StorageDirectory": storage, "IndexDirectory": storage, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomCheckCalledAet": False, "OverwriteInstances": True,
            "DicomScuTimeout": 10, "SaveJobs": False, "ConcurrentJobs": 2, "StorageCompression": False,
            "DicomModalities": {name: list(entry) for name, entry in self.modalities.items()},
        }
        if self.dicomweb:
            cfg["Plugins"] = [DICOMWEB_PLUGIN]
            cfg["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
        return cfg

    def start(self, timeout: float = 30) -> Orthanc:
        if not Path(ORTHANC_EXE).exists():
            raise RuntimeError("Debian's orthanc must be installed (scripts/ensure_system_deps.sh does it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=2))
        self.log = self.workdir / "orthanc.log"
        self.proc = subprocess.Popen([ORTHANC_EXE, str(cfg)], stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/system", timeout=2).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"Orthanc not up: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    # -- REST ------------------------------------------------------------------------------------------------
    def get(self, path: str):
        r = requests.get(f"{self.url}{path}", timeout=30)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body) -> dict:
        data = body if isinstance(body, bytes) else json.dumps(body)
        r = requests.post(f"{self.url}{path}", data=data, timeout=60)
        r.raise_for_status()
        return r.json() if r.content else {}

    def upload(self, files) -> list[str]:
        """Store files; returns their Orthanc instance ids."""
        return [self.post("/instances", Path(f).read_bytes())["ID"] for f in files]

    def store_to(self, modality: str, resources: list[str], synchronous: bool = False) -> dict:
        """C-STORE Orthanc resources to a modality of its config (a job unless ``synchronous``)."""
        return self.post(f"/modalities/{modality}/store", {"Resources": resources, "Synchronous": synchronous})

    def job(self, job_id: str) -> dict:
        return self.get(f"/jobs/{job_id}")

    def study(self, study_uid: str) -> str | None:
        found = [r for r in self.post("/tools/lookup", study_uid.encode()) if r["Type"] == "Study"]
        return found[0]["ID"] if found else None

    def series_of(self, study_uid: str) -> list[dict]:
        """The study's series with their main tags and instance ids ([] when Orthanc has no such study)."""
        study = self.study(study_uid)
        return self.get(f"/studies/{study}/series") if study else []

    def instance_file(self, instance_id: str) -> bytes:
        r = requests.get(f"{self.url}/instances/{instance_id}/file", timeout=30)
        r.raise_for_status()
        return r.content


class Listener:
    """``manage.py dicom_listener`` as a subprocess on the test database, with ``env`` added."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log, self.proc = env, log, None

    def start(self, timeout: float = 60) -> Listener:
        env = dict(os.environ, DATABASE_URL=database_url_for_subprocess(), PYTHONUNBUFFERED="1", **self.env)
        offset = self.log.stat().st_size if self.log.exists() else 0  # a restart appends to the same log
        self.proc = subprocess.Popen([sys.executable, "manage.py", "dicom_listener"], cwd=REPO, env=env,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"listener exited: {self.log.read_text()[-3000:]}")
            if "DICOM listener" in self.log.read_text()[offset:]:
                return self
            time.sleep(0.2)
        raise TimeoutError(f"listener not up: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL, as a crashed node dies."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(20)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def write_real_ct_study(folder: Path, realct: dict, *, patient_id: str = "NODE-0001",
                        patient_name: str = "Test^Adrenal", chest_only: bool = False) -> dict:
    """A study of real CT as a PACS holds it: the TotalSegmentator example CT (112 axial slices, 3 mm, upper
    abdomen with both adrenal glands) written as CT Image Storage, plus the TotalSegmentator DICOM series (a
    20-slice, 2 mm slab of the upper abdomen in JPEG 2000) with the UIDs it lacks filled in, and with
    ``chest_only`` a synthetic chest-only series (above the adrenal glands: "not assessable").
    Returns ``{"study_uid", "abdomen": (series_uid, files), "slab": (series_uid, files)[, "chest": ...]}``."""
    from inference.ml.volume import load_nifti
    from synthetic import make_patient
    from synthetic.dicom_writer import SeriesInfo, write_axial_series

    study_uid = generate_uid(entropy_srcs=["node-test", patient_id])
    volume = load_nifti(realct["example_ct"])
    info = SeriesInfo(patient_name=patient_name, patient_id=patient_id, study_uid=study_uid,
                      series_uid=generate_uid(entropy_srcs=[study_uid, "abdomen"]),
                      frame_uid=generate_uid(entropy_srcs=[study_uid, "frame"]), series_number=2,
                      description="ABDOMEN 3mm", study_date="20240117", body_part="ABDOMEN", phase="portal_venous",
                      kvp=120, kernel="B30f", sex="F", birth_date="19580302", signed=True,
                      instance_order="head_first")
    abdomen = write_axial_series(volume, folder / "abdomen", info, [f"{k:04d}.dcm" for k in range(volume.shape[0])])
    slab_uid = generate_uid(entropy_srcs=[study_uid, "slab"])
    slab = []
    for n, src in enumerate(sorted(Path(realct["example_ct_dicom"]).iterdir()), 1):
        ds = pydicom.dcmread(src)
        sop = generate_uid(entropy_srcs=[slab_uid, str(n)])
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, slab_uid
        ds.PatientID, ds.PatientName = patient_id, patient_name
        ds.PatientBirthDate, ds.PatientSex = info.birth_date, info.sex
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20240117", "101500", patient_id[-8:], "1"
        ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 3, n, "UPPER ABDOMEN SLAB J2K"
        ds.ReferringPhysicianName = ""
        path = folder / "slab" / f"{n:04d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        slab.append(path)
    out = {"study_uid": study_uid, "abdomen": (info.series_uid, abdomen), "slab": (slab_uid, slab)}
    if chest_only:
        chest = make_patient(9, abnormal=False, profile="tiny", coverage="chest_only").volume
        chest_info = SeriesInfo(**{**info.__dict__, "series_uid": generate_uid(entropy_srcs=[study_uid, "chest"]),
                                   "frame_uid": generate_uid(entropy_srcs=[study_uid, "chest-frame"]),
                                   "series_number": 4, "description": "CHEST 5mm", "body_part": "CHEST"})
        files = write_axial_series(chest, folder / "chest", chest_info, [f"{k:04d}.dcm" for k in range(chest.shape[0])])
        out["chest"] = (chest_info.series_uid, files)
    return out


@pytest.fixture
def ct_study(tmp_path, realct):
    return write_real_ct_study(tmp_path / "study", realct, chest_only=True)


@pytest.fixture
def promoted_model(settings):
    """A finished, evaluated, promoted 2-fold run of the tests' small CNN on small crops (quick on CPU), its
    weights under MEDIA_ROOT where a worker subprocess finds them. Its output bias is set high, so every image
    is voted abnormal: a scan of the adrenal region is "abnormal" with every image flagged (key images to
    send), which is what these tests need from a model; its quality is not theirs to judge. It was trained on finer
    scans than the tests' CT (3 mm voxels), so its verdicts there carry an acquisition caution."""
    from tests.factories import make_dataset, make_promoted_tiny_run

    return make_promoted_tiny_run(make_dataset("node-model"), {"backbone": "tiny_cnn", "side_px": 48, "slice_mm": 6.0},
                                  bias=4.0, acquisition=FINE_SCANS)


FINE_SCANS = {"pixel_mm": [0.7, 0.9], "slice_mm": [1.0, 1.5], "scans": 24}  # a run's train-val voxel-size range


def dciodvfy(path: Path) -> tuple[list[str], str]:
    """Run dicom3tools' validator: ``(error lines, whole output)``."""
    exe = shutil.which("dciodvfy")
    assert exe, "Debian's dicom3tools must be installed (scripts/ensure_system_deps.sh does it)"
    out = subprocess.run([exe, str(path)], capture_output=True, text=True)
    text = out.stdout + out.stderr
    return [line for line in text.splitlines() if line.startswith("Error")], text
