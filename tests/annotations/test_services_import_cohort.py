"""The synthetic cohort (synthetic.make_cohort, profile 'tiny') imported through the command:
localizers excluded, main and thick series imported with the ground truth's UIDs and sizes, labels from the
folders agreeing with ground_truth.csv, and the 'thinnest' rule keeping one scan per study."""
from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from annotations.services.importer import apply_series_rule, import_path
from annotations.models import Dataset, Patient, Series
from synthetic import make_cohort, read_ground_truth

pytestmark = pytest.mark.django_db(transaction=True)  # the command runs the job through the job runner


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "cohort"
    make_cohort(root, 4, 0.5, 7, profile="tiny", workers=1)
    return root, read_ground_truth(root / "ground_truth.csv")


def test_synthetic_cohort_counts_labels_exclusions(cohort):
    root, truth = cohort
    out = StringIO()
    call_command("import_studies", str(root), "--dataset", "synthetic", "--labels", str(root / "ground_truth.csv"),
                 "--json", "--sync", stdout=out, stderr=StringIO())
    doc = json.loads(out.getvalue())
    scans = [r for r in truth if r.kind != "localizer"]
    localizers = [r for r in truth if r.kind == "localizer"]
    assert doc["failed"] == []
    assert sorted(s["series_uid"] for s in doc["series"]) == sorted(r.series_uid for r in scans)
    assert sum(1 for s in doc["skipped"] if s["reason"] == "localizer/scout image") == len(localizers)
    assert not [s for s in doc["skipped"] if "nothing in the dataset matches" in s["reason"]]
    by_uid = {s["series_uid"]: s for s in doc["series"]}
    for r in scans:
        s = by_uid[r.series_uid]
        assert s["label"] == r.label and s["study_uid"] == r.study_uid
        assert s["shape"][0] == int(r.extra["slices"])
        assert s["spacing_mm"][2] == pytest.approx(float(r.extra["slice_spacing_mm"]), abs=1e-3)
        assert s["spacing_mm"][0] == pytest.approx(float(r.extra["pixel_spacing_mm"]), abs=1e-3)
    patients = {r.patient: r.label for r in truth}
    assert Patient.objects.filter(dataset__name="synthetic").count() == len(patients)
    assert sorted(p.label for p in Patient.objects.filter(dataset__name="synthetic")) == sorted(patients.values())
    assert Series.objects.filter(is_scan=True).count() == len(scans)


def test_thinnest_rule_keeps_the_main_series(cohort):
    root, truth = cohort
    ds = Dataset.objects.create(name="thinnest", series_rule="thinnest")
    import_path(ds, root)
    apply_series_rule(ds)
    chosen = set(Series.objects.filter(study__patient__dataset=ds, is_scan=True).values_list("series_uid", flat=True))
    assert chosen == {r.series_uid for r in truth if r.kind == "axial"}
    thick = [r for r in truth if r.kind == "thick"]
    assert Series.objects.filter(is_scan=False).count() == len(thick)
    for s in Series.objects.filter(is_scan=True):
        assert np.allclose(np.asarray(s.volume.affine)[3], [0, 0, 0, 1])
