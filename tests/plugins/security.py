"""Fixtures of the security tests: two datasets A and B with members of each role, and one object of every
kind the URLs address in A (a scan with a real volume file, a box, a run with an evaluation, a prediction, a
job, an import report), marked with text that must never reach B's members; and the URL patterns of the
project from the resolver with A's ids filled in."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pytest

MARKERS = ("alpha-members-only", "alpha-run-name", "alpha-job-message", "alpha-verdict-reason", "1.2.826.0.1.0.1")


@dataclass
class World:
    users: dict
    a: object  # Dataset A
    b: object
    ids: dict = field(default_factory=dict)  # URL kwarg name per URL prefix -> A's object id
    objects: dict = field(default_factory=dict)


@pytest.fixture
def two_datasets(make_evaluated_run, make_user, settings) -> World:
    from adrenal_site.jobs.models import Job
    from annotations.models import CropBox, ImportReport, Volume
    from annotations.services.boxes import save_box
    from inference.ml.geometry import spacing_of
    from inference.ml.volume import Volume as Vol
    from inference.ml.volume import save_nifti
    from inference.models import Prediction
    from tests.factories import make_dataset, make_job, make_run, make_series

    users = {"clinician_a": make_user("clin_a", "clinician"), "lead_a": make_user("lead_a", "lead"),
             "clinician_b": make_user("clin_b", "clinician"), "lead_b": make_user("lead_b", "lead"),
             "admin": make_user("admin_x", "admin")}
    run, evaluation = make_evaluated_run(n_patients=9, members=[users["clinician_a"], users["lead_a"]],
                                         name="alpha-members-only")
    a = run.dataset
    run.name, run.promoted = "alpha-run-name", True
    run.save()
    b = make_dataset("bravo", members=[users["clinician_b"], users["lead_b"]])
    make_series(b, "PB1", series_uid="9.9.9.1")
    run_b = make_run(b, name="bravo-run", promoted=True, operating_value=0.5)

    series = a.patients.order_by("pk").first().studies.first().series.first()
    vol = Vol(np.full((12, 24, 24), -100, np.int16), np.diag([1.5, 1.5, 3.0, 1.0]))
    rel = f"volumes/alpha-{series.pk}.nii.gz"
    save_nifti(vol, settings.MEDIA_ROOT / rel)
    Volume.objects.create(series=series, file=rel, shape=list(vol.shape),
                          spacing_mm=[float(s) for s in spacing_of(vol.affine)], affine=vol.affine.tolist())
    series.is_scan = True
    series.save(update_fields=["is_scan"])
    save_box(series, "R", [3.0, 3.0, 3.0], [20.0, 20.0, 20.0], status=CropBox.Status.PROPOSED)
    job = make_job("import", Job.Status.RUNNING, task_name="annotations.tasks.import_studies",
                   dataset_id=a.pk, created_by=users["lead_a"], message="alpha-job-message")
    report = ImportReport.objects.create(dataset=a, job=job, source="alpha-members-only.zip")
    pjob = make_job("predict", Job.Status.SUCCEEDED, task_name="inference.tasks.predict_job", queue="gpu",
                    dataset_id=a.pk, created_by=users["clinician_a"], message="alpha-job-message")
    prediction = Prediction.objects.create(series=series, run=run, verdict="not_assessable",
                                           reason="alpha-verdict-reason", job=pjob, created_by=users["clinician_a"])
    ids = {"datasets": a.pk, "series": series.pk, "runs": run.pk, "evaluations": evaluation.pk,
           "predictions": prediction.pk, "jobs": job.pk, "imports": report.pk, "patients": series.study.patient_id,
           "store/datasets": a.pk, "store/imports": report.pk, "store/patients": series.study.patient_id}
    return World(users, a, b, ids, {"run": run, "run_b": run_b, "series": series, "evaluation": evaluation,
                                     "prediction": prediction, "job": job, "report": report})


def iter_patterns(resolver=None, prefix=""):
    from django.urls import URLPattern, URLResolver, get_resolver

    resolver = resolver or get_resolver()
    for p in resolver.url_patterns:
        if isinstance(p, URLResolver):
            if getattr(p, "app_name", None) == "admin":
                continue  # Django's admin: staff login, its own permissions
            yield from iter_patterns(p, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p


def url_for(route: str, world: World) -> str:
    """The route with A's object of the right kind for each ``<int:pk>`` (by the path before it), side R,
    slab 0."""
    route = route.replace("^", "").replace("$", "").replace("\\.", ".")

    def pk_for(m: re.Match) -> str:
        before = route[:m.start()].rstrip("/")
        for prefix in sorted(world.ids, key=len, reverse=True):
            if before.endswith(prefix):
                return str(world.ids[prefix])
        raise AssertionError(f"no object of A for {route!r}: add its prefix to two_datasets' ids")

    route = re.sub(r"<int:pk>", pk_for, route)
    route = re.sub(r"<int:n>", "0", route)
    route = re.sub(r"<str:side>", "R", route)
    route = re.sub(r"<str:sop_uid>", "1.2.3", route)
    assert "<" not in route, route
    return "/" + route


def all_routes() -> list[tuple[str, object]]:
    return [(r, p) for r, p in iter_patterns() if "format" not in r]


def has_object(route: str) -> bool:
    return "<int:pk>" in route
