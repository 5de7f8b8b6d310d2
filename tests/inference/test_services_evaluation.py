"""Evaluating a run on its test patients: the stored document, the command, the job."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from inference.ml import metrics as M
from inference.ml import operating_value as OV


def test_evaluation_document(make_evaluated_run):
    run, ev = make_evaluated_run(30)
    r = ev.result
    run.refresh_from_db()
    assert run.operating_value == pytest.approx(r["operating_value"]) and run.objective == "accuracy"
    assert set(r) >= {"run", "operating_value", "objective", "image", "scan", "patient", "scans", "aggregators"}
    assert set(r["aggregators"]) == set(OV.AGGREGATORS)
    for level in ("image", "scan", "patient"):
        d = r[level]
        for name in M.CI_METRICS:
            assert name in d and f"{name}_ci" in d, (level, name)
            lo, hi = d[f"{name}_ci"]
            assert lo <= d[name] <= hi, (level, name)
        (tn, fp), (fn, tp) = d["confusion"]
        assert tn + fp + fn + tp == d["n"]
    assert r["scan"]["n"] == 10 and r["patient"]["n"] == 10 and r["image"]["n"] == 80
    # the scan verdicts are the original rule at the operating value, and agree with the confusion matrix
    (tn, fp), (fn, tp) = r["scan"]["confusion"]
    assert sum(s["verdict"] == "abnormal" and s["label"] == "abnormal" for s in r["scans"]) == tp
    assert sum(s["verdict"] == "normal" and s["label"] == "abnormal" for s in r["scans"]) == fn
    for s in r["scans"]:
        assert (s["fraction"] >= r["operating_value"]) == (s["verdict"] == "abnormal")
        assert s["series_id"] is not None and len(s["slice_scores"]) == 8
        assert all(z in [z2 for z2, _ in s["slice_scores"]] for z in s["flagged_slices_mm"])
    # the stored operating value is the one chosen on out-of-fold scans only
    from inference.services.evaluation import predictions_path

    oof, _ = OV.split_rows(OV.read_predictions_csv(predictions_path(run)))
    assert r["operating_value"] == OV.choose_operating_value(oof, "accuracy").operating_value
    # the test patients are the split's
    assert r["test_patients"] == sorted(run.split.test_patients)
    assert len(r["learning_curves"]) == 5 and r["learning_curves"][0]["history"]


def test_reading_aids_are_stored_with_the_evaluation(make_evaluated_run):
    """Reliability diagram and precision-recall curve by scikit-learn on the test scans, and PPV/NPV re-stated
    at 1% from the sensitivity and specificity at the operating value."""
    import numpy as np
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve

    from inference.services.evaluation import prevalence_at, reading_aids

    run, ev = make_evaluated_run(30)
    aids = ev.result["reading_aids"]
    scores = ev.result["aggregators"][ev.result["aggregator"]]["scores"]
    y = np.array([lab for _, lab, _ in scores])
    s = np.array([v for v, _, _ in scores])
    assert aids["n_scans"] == len(y) == 10 and aids["aggregator"] == "fraction"
    rel = aids["reliability"]
    assert rel["method"] == "identity" and rel["bins"] == 10  # the fixture's run is not calibrated
    prob_true, prob_pred = calibration_curve(y, s, n_bins=10)
    np.testing.assert_allclose(rel["calibrated"]["prob_true"], prob_true, atol=1e-4)
    np.testing.assert_allclose(rel["calibrated"]["prob_pred"], prob_pred, atol=1e-4)
    assert sum(rel["calibrated"]["count"]) == len(y) and len(rel["calibrated"]["count"]) == len(prob_true)
    precision, recall, _ = precision_recall_curve(y, s)
    np.testing.assert_allclose(aids["pr"]["precision"], precision, atol=1e-4)
    np.testing.assert_allclose(aids["pr"]["recall"], recall, atol=1e-4)
    assert aids["pr"]["base_rate"] == pytest.approx(y.mean())
    prev = aids["prevalence"]
    assert prev["default"] == 0.01 and "1%" in prev["note"]
    assert prev["sensitivity"] == ev.result["scan"]["sensitivity"]
    assert prev["specificity"] == ev.result["scan"]["specificity"]
    expected = M.predictive_values(prev["sensitivity"], prev["specificity"], 0.01)
    assert prev["ppv"] == pytest.approx(expected["ppv"]) and prev["npv"] == pytest.approx(expected["npv"])
    assert reading_aids(ev.result) == aids  # the same numbers for evaluations stored before they existed

    # at another operating value: that value's sensitivity and specificity, and PPV rising with prevalence
    at = prevalence_at(ev, 0.05, value=0.3)
    m = M.metrics_from_confusion(*M.confusion(y, s, 0.3))
    assert at["sensitivity"] == m["sensitivity"] and at["specificity"] == m["specificity"]
    assert at["ppv"] == pytest.approx(M.predictive_values(m["sensitivity"], m["specificity"], 0.05)["ppv"])
    assert prevalence_at(ev, 0.2, value=0.3)["ppv"] > at["ppv"]
    with pytest.raises(ValueError, match="prevalence"):
        prevalence_at(ev, 1.5)
    with pytest.raises(ValueError, match="aggregator"):
        prevalence_at(ev, 0.01, aggregator="nope")


def test_metrics_at_matches_the_document(make_evaluated_run):
    from inference.services.evaluation import metrics_at

    run, ev = make_evaluated_run(30)
    at = metrics_at(ev, ev.result["operating_value"])
    assert at["confusion"] == ev.result["scan"]["confusion"]
    assert at["sensitivity"] == ev.result["scan"]["sensitivity"]
    lowest = metrics_at(ev, 0.0)
    assert lowest["confusion"][0][0] == 0 and lowest["confusion"][1][0] == 0  # all called abnormal
    assert metrics_at(ev, 0.5, level="patient")["confusion"]


def test_evaluate_command_json_shape(make_evaluated_run):
    run, _ = make_evaluated_run(30, evaluate=False)
    out = StringIO()
    call_command("evaluate", str(run.pk), "--objective", "sensitivity>=0.9", "--bootstrap", "100", "--json", stdout=out)
    doc = json.loads(out.getvalue())
    assert doc["run"] == run.pk and doc["objective"] == "sensitivity>=0.9"
    for key in ("auc", "auc_ci", "accuracy", "sensitivity", "specificity", "ppv", "npv", "confusion",
                "accuracy_ci", "sensitivity_ci", "balanced_accuracy", "balanced_accuracy_ci"):
        assert key in doc["scan"] and key in doc["image"] and key in doc["patient"]
    assert {"series_uid", "probability", "fraction", "verdict", "label"} == set(doc["scans"][0])
    text = StringIO()
    call_command("evaluate", str(run.pk), "--bootstrap", "50", stdout=text)
    assert "operating value" in text.getvalue() and "scan/topk" in text.getvalue()
    # every metric printed with 3 decimals or n/a (the aggregator lines printed 0.6666666666666666 and None)
    import re
    for line in text.getvalue().splitlines():
        if line.strip().startswith("scan/"):
            assert re.fullmatch(r"\s*scan/\w+\s+value \d+\.\d{3}( \w+ (\d\.\d{3}|n/a)){3}", line), line


def test_evaluate_command_errors(make_evaluated_run):
    run, _ = make_evaluated_run(12, evaluate=False)
    with pytest.raises(CommandError, match="no training run"):
        call_command("evaluate", "999999")
    with pytest.raises(CommandError, match="unknown objective"):
        call_command("evaluate", str(run.pk), "--objective", "f1")
    run.artifacts_dir = "runs/missing"
    run.save()
    with pytest.raises(CommandError, match="has no predictions"):
        call_command("evaluate", str(run.pk))
    # every bad setting is named, not a numpy or Python error
    for args, message in ((["--bootstrap", "-5"], "bootstrap replicates must be a whole number from 1"),
                          (["--bootstrap", "10000000"], "bootstrap replicates must be a whole number from 1"),
                          (["--seed", "-1"], "bootstrap seed must be"),
                          (["--top-k", "0"], "top-k must be a whole number of at least 1"),
                          (["--objective", "sensitivity>=2"], "target sensitivity 2 is outside 0.5-1"),
                          (["--objective", "sensitivity>=1.5.2"], "unknown objective|is not a number")):
        with pytest.raises(CommandError, match=message):
            call_command("evaluate", str(run.pk), *args)
    from tests.factories import set_status

    set_status(run, "failed")
    with pytest.raises(CommandError, match=f"run {run.pk} failed: only a finished run can be evaluated"):
        call_command("evaluate", str(run.pk))


def test_test_rows_must_be_the_splits_test_patients(make_evaluated_run):
    from inference.services.evaluation import evaluate_run

    run, _ = make_evaluated_run(12, evaluate=False)
    split = run.split
    split.test_patients = split.test_patients[:-1]
    split.save()
    with pytest.raises(ValueError, match="not in the split's test patients"):
        evaluate_run(run)


def test_evaluation_job_function(make_evaluated_run, users):
    from adrenal_site.jobs.models import Job
    from inference.models import Evaluation
    from inference.tasks import evaluate_run_job

    run, _ = make_evaluated_run(12, evaluate=False)
    job = Job.objects.create(kind="evaluate", task_name=evaluate_run_job.name, params={"run_id": run.pk,
                                                                                       "objective": "youden"})
    result = evaluate_run_job.job_fn(job, **job.params)
    job.refresh_from_db()
    assert job.progress == 100.0 and "operating value" in job.message
    ev = Evaluation.objects.get(pk=result["evaluation"])
    assert ev.objective == "youden" and ev.run_id == run.pk


def test_a_redelivered_evaluation_job_stores_one_evaluation(make_evaluated_run):
    """Late acknowledgement delivers an ``evaluate`` job again when its worker died after the evaluation was
    stored but before the job ended: the second run of the task rewrites the job's evaluation, it adds none.
    (It added a second row of the same result: the run's page and ``runs/compare`` listed the run twice.)"""
    from adrenal_site.jobs.models import Job
    from inference.models import Evaluation
    from inference.services.evaluation import evaluate_run
    from inference.tasks import evaluate_run_job

    run, _ = make_evaluated_run(12, evaluate=False)
    job = Job.objects.create(kind="evaluate", task_name=evaluate_run_job.name, status="running",
                             params={"run_id": run.pk, "objective": "youden"})
    first = evaluate_run_job.job_fn(job, **job.params)
    again = evaluate_run_job.job_fn(job, **job.params)  # the re-delivered task
    assert again["evaluation"] == first["evaluation"]
    assert list(Evaluation.objects.filter(run=run).values_list("pk", flat=True)) == [first["evaluation"]]
    evaluate_run(run)  # outside a job (``manage.py evaluate``): an evaluation of its own
    assert Evaluation.objects.filter(run=run).count() == 2


def test_side_scores_from_stored_images(make_evaluated_run, settings):
    """With the run's weights and the test scans' 2.5D images stored, each scan gets R and L scores."""
    from pathlib import Path

    import numpy as np
    import torch

    from inference.services.evaluation import evaluate_run
    from inference.ml.metrics import Bootstrap
    from inference.ml.networks import build_model
    from inference.models import Image25D

    run, _ = make_evaluated_run(6, evaluate=False)
    run.config = {"backbone": "resnet18"}
    run.save()
    media = Path(settings.MEDIA_ROOT)
    torch.manual_seed(0)
    weights = media / run.artifacts_dir / "fold0" / "best.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_model("resnet18")[0].state_dict(), weights)
    run.folds.filter(fold=0).update(weights=str(weights.relative_to(media)))
    run.folds.exclude(fold=0).delete()
    before = evaluate_run(run, boot=Bootstrap(n=20))
    assert all(s["sides"] == {} for s in before.result["scans"]) and "no stored 2.5D images" in before.result["sides_note"]
    rng = np.random.default_rng(0)
    test_series = [s["series_id"] for s in before.result["scans"]]
    for sid in test_series:
        for k in range(4):
            rel = f"images25d/{sid}_{k}.npy"
            (media / "images25d").mkdir(exist_ok=True)
            np.save(media / rel, rng.random((3, 32, 64)).astype(np.float16))
            Image25D.objects.create(series_id=sid, slice_index=k, z_mm=float(k), file=rel, boxes_version="v1")
    ev = evaluate_run(run, boot=Bootstrap(n=20))
    assert ev.result["sides_note"] == ""
    for s in ev.result["scans"]:
        assert set(s["sides"]) == {"R", "L"} and all(0.0 <= v <= 1.0 for v in s["sides"].values())


def test_a_run_that_finishes_is_evaluated_once(make_evaluated_run):
    """The train job is queued with its join (aggregation) and its continuation (evaluation): once the join
    succeeded the run succeeds and exactly one evaluation job is queued."""
    from adrenal_site.jobs.models import Job
    from adrenal_site.jobs.runner import settle
    from inference.tasks import aggregate_run_job, evaluate_run_job
    from tests.factories import make_job

    run, _ = make_evaluated_run(12, evaluate=False)
    Job.objects.filter(pk=run.job_id).update(status="running", awaiting_children=True, finished_at=None,
                                             join_task=aggregate_run_job.name, then_task=evaluate_run_job.name)
    run.refresh_from_db()
    assert run.stage == "aggregating"
    make_job("train_aggregate", "running", task_name=aggregate_run_job.name, parent=run.job)
    settle(run.job_id)
    assert not Job.objects.filter(kind="evaluate").exists()
    Job.objects.filter(parent=run.job_id, kind="train_aggregate").update(status="succeeded")
    settle(run.job_id)
    run.refresh_from_db()
    jobs = Job.objects.filter(kind="evaluate", params__run_id=run.pk)
    assert run.status == "succeeded" and jobs.count() == 1 and jobs.get().queue == "cpu"
    settle(run.job_id)  # settling again (the run already succeeded) queues nothing more
    assert jobs.count() == 1
