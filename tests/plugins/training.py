"""Fixtures of the training area: a tiny labelled cohort of synthetic CT volumes with confirmed boxes and
built 2.5D images (abnormal patients carry a bright blob, the "lesion", in one adrenal box)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TEST_IMAGE = {"side_px": 16, "pixel_spacing_mm": 2.0, "slice_spacing_mm": 3.0}
R_BOX = ((-40.0, -10.0, -15.0), (-16.0, 14.0, 15.0))  # patient right = -x in LPS
L_BOX = ((16.0, -10.0, -15.0), (40.0, 14.0, 15.0))


def synthetic_volume(seed: int, abnormal: bool):
    """A 24x48x48 volume (2 mm in-plane, 3 mm slices) centred on the origin: soft tissue with noise, and a
    300 HU blob in one box when abnormal."""
    from inference.ml.volume import Volume

    rng = np.random.default_rng(seed)
    arr = (40 + rng.normal(0, 25, (24, 48, 48))).astype(np.int16)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [-47.0, -47.0, -34.5]
    if abnormal:
        box = R_BOX if seed % 2 else L_BOX
        c = (np.asarray(box[0]) + np.asarray(box[1])) / 2 + rng.uniform(-4, 4, 3)
        k, j, i = np.mgrid[0:24, 0:48, 0:48]
        xyz = np.stack([i, j, k], -1) @ affine[:3, :3].T + affine[:3, 3]
        arr[np.linalg.norm(xyz - c, axis=-1) < 7] = 300
    return Volume(arr, affine)


def make_cohort(name: str, n_patients: int, media_root: Path, build: bool = True, seed: int = 0):
    """Dataset, patients (alternating labels), one scan each with volume and confirmed boxes, built images."""
    from annotations.models import Dataset

    ds = Dataset.objects.create(name=name)
    add_patients(ds, range(n_patients), media_root, build, seed)
    return ds


def add_patients(ds, numbers, media_root: Path, build: bool = True, seed: int = 0) -> None:
    """Patients ``<dataset>-P<n>`` for each n of ``numbers`` (abnormal when n is odd), as ``make_cohort`` makes them."""
    from annotations.services.boxes import save_box
    from annotations.models import Label, Patient, Series, Study
    from annotations.models import Volume as VolumeRow
    from inference.ml.volume import save_nifti
    from inference.services.images import build_series

    name = ds.name
    for n in numbers:
        abnormal = n % 2 == 1
        p = Patient.objects.create(dataset=ds, pseudo_id=f"{name}-P{n:02d}")
        Label.assign(p, "abnormal" if abnormal else "normal", "ui")
        st = Study.objects.create(patient=p, study_uid=f"2.25.{seed}{n}.1")
        se = Series.objects.create(study=st, series_uid=f"2.25.{seed}{n}.1.1", modality="CT")
        vol = synthetic_volume(seed * 1000 + n, abnormal)
        rel = f"volumes/{name}/{n}.nii.gz"
        save_nifti(vol, media_root / rel)
        VolumeRow.objects.create(series=se, file=rel, shape=list(vol.shape), spacing_mm=vol.spacing.tolist(),
                                 affine=vol.affine.tolist())
        save_box(se, "R", *R_BOX, status="confirmed")
        save_box(se, "L", *L_BOX, status="confirmed")
        if build:
            build_series(se, TEST_IMAGE)


@pytest.fixture
def training_cohort(settings):
    """``training_cohort(name, n_patients=15)`` -> Dataset with built 2.5D images (MEDIA_ROOT as configured)."""
    settings.ADRENAL_AUTO_REBUILD_IMAGES = False

    def make(name: str = "tiny-ds", n_patients: int = 15, build: bool = True, seed: int = 0):
        return make_cohort(name, n_patients, Path(settings.MEDIA_ROOT), build, seed)

    return make
