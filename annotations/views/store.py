"""Pages of the study store: datasets with counts, dataset create/edit (admins), zip upload import with live
progress, the import report, label editing with history, and "judge every scan of this dataset" (leads)."""
from __future__ import annotations

import shutil

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from adrenal_site.roles import ADMIN, CLINICIAN, LEAD, has_role, role_required

from ..models import Dataset, ImportItem, ImportReport, Label, Patient, Series
from ..services import verdicts
from ..services.importer import LabelsCsvInvalid, apply_series_rule, read_labels_csv
from ..services.stats import dataset_counts
from ..services.uploads import (NIFTI_SUFFIXES, UploadRefused, limit_request, max_upload_bytes, receive_nifti_as_zip,
                               receive_upload)
from ..tasks import start_import


class DatasetForm(forms.ModelForm):
    members = forms.ModelMultipleChoiceField(queryset=get_user_model().objects.order_by("username"), required=False,
                                             widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = Dataset
        fields = ["name", "description", "series_rule", "members"]


class UploadForm(forms.Form):
    archive = forms.FileField(
        label="Studies", help_text="A .zip of the study folders (any layout; normal/ and abnormal/ folders give "
                                   "labels), or one NIfTI scan (.nii or .nii.gz; the file name becomes the patient)",
        widget=forms.ClearableFileInput(attrs={"accept": ".zip,.nii,.nii.gz,.gz"}))
    labels = forms.FileField(required=False, help_text="Optional CSV: label plus patient, study_uid or series_uid")


class LabelForm(forms.Form):
    value = forms.ChoiceField(choices=[("normal", "normal"), ("abnormal", "abnormal"), ("inherit", "inherit (series only)")])
    side = forms.ChoiceField(choices=list(Label.SIDES.items()), required=False)
    series = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1, widget=forms.HiddenInput)
    note = forms.CharField(required=False, max_length=300)

    def clean(self):
        data = super().clean()
        if data.get("value") in Label.Value.values:
            try:
                data["side"] = Label.check_side(data["value"], data.get("side"))
            except ValueError as exc:
                self.add_error("side", str(exc))
        return data


@role_required(CLINICIAN)
def dataset_list(request):
    datasets = [(d, dataset_counts(d)) for d in Dataset.objects.visible_to(request.user)]
    return render(request, "annotations/store/dataset_list.html", {"datasets": datasets})


@role_required(ADMIN)
def dataset_edit(request, pk: int | None = None):
    dataset = get_object_or_404(Dataset, pk=pk) if pk else None
    form = DatasetForm(request.POST or None, instance=dataset)
    if request.method == "POST" and form.is_valid():
        dataset = form.save()
        apply_series_rule(dataset)
        messages.success(request, f"Dataset {dataset.name} saved.")
        return redirect("store-dataset", pk=dataset.pk)
    return render(request, "annotations/store/dataset_form.html", {"form": form, "dataset": dataset})


@role_required(CLINICIAN)
def dataset_detail(request, pk: int):
    dataset = get_object_or_404(Dataset.objects.visible_to(request.user), pk=pk)
    patients = Patient.objects.filter(dataset=dataset).prefetch_related("studies__series__volume", "labels")
    rows = []
    for p in patients:
        series = [s for st in p.studies.all() for s in st.series.all()]
        current = next((lab for lab in p.labels.all() if lab.is_current and lab.series_id is None), None)
        rows.append({"patient": p, "label": current, "series": series,
                     "scans": sum(1 for s in series if s.is_scan and hasattr(s, "volume"))})
    imports = dataset.imports.select_related("job")[:20] if has_role(request.user, ADMIN) else []
    return render(request, "annotations/store/dataset_detail.html", {
        "dataset": dataset, "counts": dataset_counts(dataset), "rows": rows, "imports": imports,
        "judging": verdicts.judging(dataset) if has_role(request.user, LEAD) else None,
    })


class JudgeForm(forms.Form):
    force = forms.BooleanField(required=False)


@role_required(LEAD)
@require_POST
def dataset_judge(request, pk: int):
    """"Judge every scan of this dataset" with its promoted model: one job (the API's
    ``POST /api/datasets/<id>/judge/`` queues the same), then back to the dataset's page."""
    dataset = get_object_or_404(Dataset.objects.visible_to(request.user), pk=pk)
    form = JudgeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "force: true or false")
        return redirect("store-dataset", pk=dataset.pk)
    try:
        job = verdicts.start_judging(dataset, request.user, force=form.cleaned_data["force"])
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"judging every scan of {dataset.name}: job #{job.pk}")
    return redirect("store-dataset", pk=dataset.pk)


def _refuse(request, dataset, form, message: str, status: int = 400) -> HttpResponse:
    messages.error(request, message)
    return render(request, "annotations/store/import_upload.html", {"dataset": dataset, "form": form,
                                                                    "limit_mb": _limit() // 1024**2}, status=status)


def _limit() -> int:
    return max_upload_bytes()


@role_required(ADMIN)
@csrf_exempt  # only so the size-limiting upload handler goes in before the body is read; CSRF is checked below
def dataset_import(request, pk: int):
    """Upload a zip; it is streamed to disk (stopped past the size limit), checked, then imported by a cpu job."""
    limit_request(request)
    return _dataset_import(request, pk)


@csrf_protect
def _dataset_import(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    if request.method != "POST":
        return render(request, "annotations/store/import_upload.html",
                      {"dataset": dataset, "form": UploadForm(), "limit_mb": _limit() // 1024**2})
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > _limit() + 1024**2:
        return _refuse(request, dataset, UploadForm(), f"upload of {length / 1024**2:.0f} MB is over the limit of "
                                                       f"{_limit() / 1024**2:.0f} MB", status=413)
    form = UploadForm(request.POST, request.FILES)
    if getattr(request, "upload_refused", None):
        return _refuse(request, dataset, UploadForm(), request.upload_refused, status=413)
    if not form.is_valid():
        return _refuse(request, dataset, form, "choose a .zip of the study folders or a .nii/.nii.gz file to upload")
    archive = form.cleaned_data["archive"]
    try:
        if archive.name.lower().endswith(NIFTI_SUFFIXES):
            zip_path = receive_nifti_as_zip(archive)
        else:
            zip_path = receive_upload(archive, name="upload.zip")
        labels_path = None
        if form.cleaned_data.get("labels"):
            try:
                labels_path = receive_upload(form.cleaned_data["labels"], name="labels.csv", folder=zip_path.parent)
                read_labels_csv(labels_path)  # refused now, before an import is queued, when it is no labels table
            except BaseException:
                shutil.rmtree(zip_path.parent, ignore_errors=True)
                raise
    except UploadRefused as exc:
        return _refuse(request, dataset, form, f"{archive.name}: {exc}")
    except LabelsCsvInvalid as exc:
        return _refuse(request, dataset, form, f"{form.cleaned_data['labels'].name}: {exc}")
    with transaction.atomic():
        job = start_import(dataset, zip_path=str(zip_path), labels_csv=str(labels_path) if labels_path else None,
                           source=archive.name, user=request.user)
        report = ImportReport.objects.create(dataset=dataset, job=job, source=archive.name[:1000])
    messages.success(request, f"{archive.name} uploaded; importing as job #{job.pk}.")
    return redirect("store-import-report", pk=report.pk)


@role_required(ADMIN)
def import_report(request, pk: int):
    report = get_object_or_404(ImportReport.objects.select_related("dataset", "job"), pk=pk)
    status = request.GET.get("status")
    items = report.items.select_related("series__study__patient")
    if status in ImportItem.Status.values:
        items = items.filter(status=status)
    return render(request, "annotations/store/import_report.html", {
        "report": report, "items": items, "counts": report.counts(), "status": status,
        "statuses": ImportItem.Status.values,
    })


@role_required(CLINICIAN)
def patient_labels(request, pk: int):
    """The patient's label and per-series overrides with full history; admins change them."""
    patient = get_object_or_404(Patient.objects.filter(dataset__in=Dataset.objects.visible_to(request.user)), pk=pk)
    status = 200
    if request.method == "POST":
        if not has_role(request.user, ADMIN):
            raise PermissionDenied("Only admins change labels.")
        form = LabelForm(request.POST)
        if form.is_valid():
            series = None
            if form.cleaned_data.get("series"):
                series = get_object_or_404(Series, pk=form.cleaned_data["series"], study__patient=patient)
            value, side, note = form.cleaned_data["value"], form.cleaned_data["side"], form.cleaned_data["note"]
            if value == "inherit":
                if series is None:
                    messages.error(request, "Only a series override can be removed; a patient needs a label.")
                else:
                    Label.objects.filter(patient=patient, series=series, is_current=True).update(is_current=False)
                    messages.success(request, f"Series {series.pk} now inherits the patient's label.")
            else:
                Label.assign(patient, value, Label.Source.UI, series=series, user=request.user, note=note, side=side)
                messages.success(request, f"Label set to {value}" + (f", side {Label.SIDES[side]}" if side else "")
                                 + (f" for series {series.pk}" if series else "") + ".")
            return redirect("store-patient-labels", pk=patient.pk)
        messages.error(request, "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()))
        status = 400
    history = list(Label.objects.filter(patient=patient).select_related("series", "created_by"))
    current = next((h for h in history if h.is_current and h.series_id is None), None)
    overrides = {h.series_id: h for h in history if h.is_current and h.series_id is not None}
    series = list(Series.objects.filter(study__patient=patient).select_related("study", "volume"))
    for s in series:
        s.override = overrides.get(s.pk)
    return render(request, "annotations/store/patient_labels.html", {
        "patient": patient, "current": current, "series": series, "history": history,
        "sides": Label.SIDES.items(), "can_edit": has_role(request.user, ADMIN),
    }, status=status)
