"""Fixtures of the storage area: two hosts that see one shared filesystem at different mount points.

- ``two_hosts``: a :class:`TwoHosts` whose ``web`` data dir is where the web host writes (``MEDIA_ROOT`` is set
  to it); ``move_to_worker_host()`` copies that tree to the worker host's mount point, deletes the web host's
  copy (so a path that exists only on the web host fails loudly) and points ``MEDIA_ROOT`` (settings, and the
  environment a worker subprocess inherits) at the worker's copy;
- ``stage_on_web_host(hosts, user)``: what the web host does before a worker runs anything: a promoted model's
  weights, an uploaded zip (a NIfTI scan and a labels CSV) queued for import, an uploaded NIfTI queued for a
  verdict (jobs made, not sent);
- ``paths_in_db(*roots)``: every database value that holds an absolute path or names one of ``roots``.
"""
from __future__ import annotations

import io
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

FILE_FIELDS = {  # model label -> fields holding a storage name
    "annotations.Volume": ["file", "preview"],
    "inference.Image25D": ["file", "thumbnail"],
    "inference.TrainingRun": ["artifacts_dir"],
    "inference.FoldRun": ["weights"],
    "inference.DicomResult": ["file"],
}


@dataclass
class TwoHosts:
    web: Path  # the web host's ADRENAL_DATA_DIR
    worker: Path  # the same data as the GPU host mounts it (another path)
    settings: object

    @property
    def web_media(self) -> Path:
        return self.web / "media"

    @property
    def worker_media(self) -> Path:
        return self.worker / "media"

    def move_to_worker_host(self) -> None:
        shutil.copytree(self.web, self.worker, symlinks=True)
        shutil.rmtree(self.web)
        self.settings.MEDIA_ROOT = self.worker_media
        os.environ["MEDIA_ROOT"] = str(self.worker_media)


@pytest.fixture
def two_hosts(tmp_path, settings):
    hosts = TwoHosts(tmp_path / "web-host" / "srv" / "adrenal", tmp_path / "gpu-host" / "mnt" / "nfs" / "adrenal",
                     settings)
    hosts.web_media.mkdir(parents=True)
    settings.MEDIA_ROOT = hosts.web_media
    old = os.environ.get("MEDIA_ROOT")
    yield hosts
    if old is None:
        os.environ.pop("MEDIA_ROOT", None)
    else:
        os.environ["MEDIA_ROOT"] = old


def _promoted_tiny_model():
    """A finished, evaluated, promoted 2-fold run of the tests' small CNN, its weights in the storage."""
    from tests.factories import make_dataset, make_promoted_tiny_run

    return make_promoted_tiny_run(make_dataset("storage-model"),
                                  {"backbone": "tiny_cnn", "side_px": 48, "slice_mm": 6.0})


def stage_on_web_host(hosts: TwoHosts, user) -> dict:
    """The web host's side, with ``MEDIA_ROOT`` at ``hosts.web_media``: ``{"run", "dataset", "import_job",
    "predict_job"}`` (jobs queued with ``send=False``; their uploads saved in the storage)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from annotations.models import Dataset
    from annotations.services.uploads import new_upload_folder, save_stream
    from annotations.tasks import start_import
    from inference.ml.volume import save_nifti
    from inference.tasks import submit_prediction
    from synthetic import make_patient

    assert Path(hosts.settings.MEDIA_ROOT) == hosts.web_media
    run = _promoted_tiny_model()
    dataset = Dataset.objects.create(name="remote")
    dataset.members.add(user)
    run.dataset.members.add(user)  # a model of a dataset the submitter belongs to (README: roles)
    scratch = hosts.web.parent / "scratch"
    scratch.mkdir()
    nifti = save_nifti(make_patient(3, abnormal=True, profile="tiny").volume, scratch / "remote-scan.nii.gz")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(nifti, "abnormal/remote-scan.nii.gz")
    folder = new_upload_folder()  # as the import page saves an upload
    save_stream([archive.getvalue()], folder / "upload.zip", 1 << 30)
    save_stream([b"patient,label\nremote-scan,abnormal\n"], folder / "labels.csv", 1 << 20)
    import_job = start_import(dataset, zip_path=str(folder / "upload.zip"), labels_csv=str(folder / "labels.csv"),
                              source="upload.zip", user=user, send=False)
    predict_job = submit_prediction(user, run_id=run.pk, send=False,
                                    upload=SimpleUploadedFile("second-scan.nii.gz", nifti.read_bytes()))
    shutil.rmtree(scratch)
    return {"run": run, "dataset": dataset, "import_job": import_job, "predict_job": predict_job}


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def paths_in_db(*roots: Path) -> list[str]:
    """``"model.field #pk: value"`` for every stored file reference that is absolute, and for every character or
    JSON value of any row of the project's apps that names one of ``roots`` (a host's data directory)."""
    from django.apps import apps
    from django.db import models

    found = []
    for label, fields in FILE_FIELDS.items():
        model = apps.get_model(label)
        for pk, *values in model.objects.values_list("pk", *fields):
            for field, value in zip(fields, values):
                if value and (value.startswith("/") or Path(value).is_absolute()):
                    found.append(f"{label}.{field} #{pk}: {value}")
    needles = [str(r) for r in roots]
    for app in ("jobs", "annotations", "inference"):
        for model in apps.get_app_config(app).get_models():
            fields = [f.name for f in model._meta.concrete_fields
                      if isinstance(f, (models.CharField, models.TextField, models.JSONField, models.FileField))]
            for pk, *values in model.objects.values_list("pk", *fields):
                for field, value in zip(fields, values):
                    for text in _strings(value):
                        if any(n in text for n in needles):
                            found.append(f"{model._meta.label}.{field} #{pk}: {text[:200]}")
    return found
