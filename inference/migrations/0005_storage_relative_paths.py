"""Stored file references become storage names (relative to the storage root, ``adrenal_site.storage``).

Rows written before the one storage layer may hold absolute paths under this host's ``MEDIA_ROOT`` (a job's
upload or import folder in ``Job.params``, a not-assessable upload's path in ``Job.result``, an import report's
folder, and any file field written from an absolute path). Each is rewritten relative to ``MEDIA_ROOT`` so a worker
on another host, which mounts the shared storage elsewhere, resolves it under its own root. Paths outside
``MEDIA_ROOT`` (an admin's import folder elsewhere) are kept as they are. Run ``migrate`` on the host whose
``MEDIA_ROOT`` those paths were written under (the web host). Reversing keeps the names (they resolve the same).
"""
from __future__ import annotations

import os

from django.conf import settings
from django.db import migrations

# (app, model, fields): character and file fields that name a stored file or folder
FILE_FIELDS = [
    ("annotations", "Volume", ["file", "preview"]),
    ("annotations", "ImportReport", ["source"]),
    ("annotations", "ImportItem", ["path"]),
    ("inference", "Image25D", ["file", "thumbnail"]),
    ("inference", "TrainingRun", ["artifacts_dir"]),
    ("inference", "FoldRun", ["weights"]),
    ("inference", "DicomResult", ["file"]),
]


def _roots() -> list[str]:
    root = str(settings.MEDIA_ROOT)
    return sorted({os.path.abspath(root), os.path.realpath(root)}, key=len, reverse=True)


def relative(value, roots: list[str]):
    """``value`` with every string under one of ``roots`` made relative (``/``-separated), recursively through
    lists and dicts; other values unchanged."""
    if isinstance(value, str):
        for root in roots:
            if value.startswith(root + os.sep):
                return value[len(root) + 1:].replace(os.sep, "/")
        return value
    if isinstance(value, list):
        return [relative(v, roots) for v in value]
    if isinstance(value, dict):
        return {k: relative(v, roots) for k, v in value.items()}
    return value


def forwards(apps, schema_editor):
    roots = _roots()
    for app, model_name, fields in FILE_FIELDS:
        model = apps.get_model(app, model_name)
        for field in fields:
            for root in roots:
                for pk, value in model.objects.filter(**{f"{field}__startswith": root + os.sep}) \
                        .values_list("pk", field).iterator():
                    model.objects.filter(pk=pk).update(**{field: relative(value, roots)})
    Job = apps.get_model("jobs", "Job")
    for job in Job.objects.only("pk", "params", "result").iterator():
        params, result = relative(job.params, roots), relative(job.result, roots)
        if params != job.params or result != job.result:
            Job.objects.filter(pk=job.pk).update(params=params, result=result)


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0004_dicom_node_deliveries_and_results"),
        ("annotations", "0003_box_history_and_side_findings"),
        ("jobs", "0002_fanout_join_then"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
