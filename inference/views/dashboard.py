"""Lead dashboards: runs compared on the same test patients, a run's evaluation page, exports."""
from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from adrenal_site.roles import LEAD, role_required
from adrenal_site.spreadsheet import SafeWriter

from ..api.runs import visible_runs
from ..services.evaluation import comparison_groups
from ..services.label_changes import label_changes
from ..services.lesion_sizes import lesion_size_sensitivity
from ..services.verdicts import latest_judging_job
from ..tasks import start_judge_dataset


@role_required(LEAD)
def compare(request):
    groups_list = comparison_groups(visible_runs(request.user))
    for g in groups_list:
        g["rows"] = []
        for run, summary in g.pop("entries"):
            cells = []
            if summary:  # value, interval and whether the interval has no width (every resample gave one value)
                for m in COMPARED:
                    interval = summary["scan"].get(f"{m}_ci")
                    cells.append({"metric": m, "value": summary["scan"].get(m), "ci": interval,
                                  "point": bool(interval) and interval[0] == interval[1]})
            g["rows"].append({"run": run, "ev": summary, "cells": cells})
    point = any(c["point"] for g in groups_list for r in g["rows"] for c in r["cells"])
    return render(request, "inference/dashboard/compare.html", {"groups": groups_list, "point_interval": point})


COMPARED = ("auc", "accuracy", "sensitivity", "specificity")


@role_required(LEAD)
def run_dashboard(request, pk: int):
    run = get_object_or_404(visible_runs(request.user).select_related("dataset"), pk=pk)
    evaluation = run.evaluations.first()
    judge_job = latest_judging_job(run.dataset_id, run.pk)
    by_size = lesion_size_sensitivity(evaluation) if evaluation else None
    changed = label_changes(evaluation) if evaluation else []
    return render(request, "inference/dashboard/run.html", {"run": run, "evaluation": evaluation,
                                                            "judge_job": judge_job, "by_size": by_size,
                                                            "label_changes": changed})


@role_required(LEAD)
@require_POST
def judge_dataset(request, pk: int):
    """"Judge every scan of this dataset" with the run (promoted): one job, then back to the dashboard."""
    run = get_object_or_404(visible_runs(request.user).select_related("dataset"), pk=pk)
    try:
        job = start_judge_dataset(run.dataset, request.user, run_id=run.pk, force=bool(request.POST.get("force")))
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"judging every scan of {run.dataset.name}: job #{job.pk}")
    return redirect("run-dashboard", pk=run.pk)


def _latest(request, pk: int):
    run = get_object_or_404(visible_runs(request.user), pk=pk)
    evaluation = run.evaluations.first()
    if evaluation is None:
        raise Http404(f"run {pk} has not been evaluated")
    return run, evaluation


@role_required(LEAD)
def export_json(request, pk: int):
    run, ev = _latest(request, pk)
    doc = {"evaluation": ev.pk, **ev.result, "sensitivity_by_lesion_size": lesion_size_sensitivity(ev),
           "label_changes": label_changes(ev)}
    response = HttpResponse(json.dumps(doc, indent=1), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="run{run.pk}-evaluation{ev.pk}.json"'
    return response


@role_required(LEAD)
def export_csv(request, pk: int):
    """Metrics of each level (with CI bounds) followed by the per-scan verdicts."""
    run, ev = _latest(request, pk)
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="run{run.pk}-evaluation{ev.pk}.csv"'
    w = SafeWriter(response)  # text a spreadsheet would take for a formula ("-40.0 -35.0") stays text
    w.writerow(["run", run.pk, "evaluation", ev.pk, "objective", ev.objective, "operating_value", ev.operating_value,
                "aggregator", ev.result.get("aggregator", "")])
    w.writerow(["level", "metric", "value", "ci_low", "ci_high"])
    for level in ("image", "scan", "patient"):
        d = ev.result[level]
        for name in ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv"):
            ci = d.get(f"{name}_ci") or [None, None]
            w.writerow([level, name, d.get(name), ci[0], ci[1]])
        (tn, fp), (fn, tp) = d["confusion"]
        w.writerow([level, "confusion tn/fp/fn/tp", f"{tn}/{fp}/{fn}/{tp}", "", ""])
    w.writerow([])
    # score: what the verdict compared with the operating value (the aggregator's scan score; for "sides" the
    # higher gland's, score_R and score_L), beside the mean image probability and the fraction voted abnormal
    w.writerow(["series_uid", "series_id", "patient", "probability", "fraction", "score", "score_R", "score_L",
                "verdict", "label", "outcome", "flagged_slices_mm"])
    for s in ev.result["scans"]:
        sides = s.get("sides") or {}
        w.writerow([s["series_uid"], s.get("series_id"), s.get("patient"), s["probability"], s["fraction"],
                    s.get("score"), sides.get("R"), sides.get("L"), s["verdict"], s["label"], s.get("outcome"),
                    " ".join(map(str, s.get("flagged_slices_mm", [])))])
    return response
