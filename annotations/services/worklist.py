"""The worklist: a dataset's scans with label, box status and latest verdict, counts and filters."""
from __future__ import annotations

from django.db.models import F, Prefetch

from ..models import Dataset, Gland, Label, Series, split_notes
from . import verdicts

FILTERS = ("status", "verdict", "label", "q")
# The values each enumerated filter takes ("none": no verdict / no label yet); ``q`` is free text.
FILTER_CHOICES = {"status": tuple(Series.BoxStatus.values), "verdict": ("normal", "abnormal", "not_assessable", "none"),
                  "label": ("normal", "abnormal", "none")}


def worklist_rows(dataset: Dataset, filters: dict | None = None) -> dict:
    """Rows of a dataset's scans (label, box status, latest verdict, the volume's geometry notes as a list),
    counts, and the first unconfirmed scan.

    ``filters``: ``status`` (box status), ``verdict`` (normal/abnormal/not_assessable/none), ``label``
    (normal/abnormal/none): ``FILTER_CHOICES``, which the API checks first; ``q`` (text in patient id or series
    description). Counts are over all scans.
    """
    filters = {k: v for k, v in (filters or {}).items() if k in FILTERS and v}
    current = Label.objects.filter(is_current=True)  # Meta ordering: newest first, as Series.label reads it
    qs = (
        Series.objects.filter(study__patient__dataset=dataset, is_scan=True)
        .select_related("study__patient")
        .prefetch_related("findings", "boxes",
                          Prefetch("labels", queryset=current, to_attr="current_labels"),
                          Prefetch("study__patient__labels", queryset=current.filter(series__isnull=True),
                                   to_attr="current_labels"))
        .annotate(volume_notes=F("volume__notes"))
        .order_by("study__patient__pseudo_id", "study_id", "series_number", "id")
    )
    qs = verdicts.annotate_latest(qs)
    rows, counts = [], {"total": 0, **{s: 0 for s in Series.BoxStatus.values}}
    for s in qs:  # the label as Series.label gives it, from the prefetched current labels (no query per row)
        own = s.current_labels[0].value if s.current_labels else None
        patient_labels = s.study.patient.current_labels
        label = own or (patient_labels[0].value if patient_labels else None)
        row = {
            "id": s.pk, "patient": s.study.patient.pseudo_id, "series": s.series_description or s.series_uid,
            "series_uid": s.series_uid, "label": label, "box_status": s.box_status,
            "box_status_display": s.get_box_status_display(), "box_status_reason": s.box_status_reason,
            "verdict": s.verdict, "probability": s.probability, "probability_cutoff": s.verdict_cutoff,
            "verdict_cautions": list(s.verdict_cautions or []),
            "url": f"/series/{s.pk}/",
            "findings": findings_summary(s.findings.all()),
            "box_sides": box_sides_summary(s),
            "geometry_notes": split_notes(s.volume_notes),
        }
        counts["total"] += 1
        counts[s.box_status] += 1
        if _matches(row, filters):
            rows.append(row)
    next_id = next((r["id"] for r in rows if r["box_status"] in ("none", "proposed")), None)
    return {"dataset": {"id": dataset.pk, "name": dataset.name}, "counts": counts, "filters": filters,
            "rows": rows, "next_unconfirmed": next_id}


def box_sides_summary(series: Series) -> list[dict]:
    """Each side's box in a worklist row: ``{"side", "text", "note"}`` with ``text`` like ``"R proposed by atlas
    registration, confidence 0.82"`` or ``"L not covered"`` (``note`` then says what is missing); sides with
    neither are left out. Reads the prefetched ``boxes``."""
    boxes = {b.side: b for b in series.boxes.all()}
    out = []
    for side in ("R", "L"):
        box = boxes.get(side)
        if box is not None:
            text = f"{side} {box.status}" if box.status == "confirmed" else f"{side} {box.provenance}"
            out.append({"side": side, "text": text, "note": box.note})
        elif side in (series.uncovered_sides or {}):
            out.append({"side": side, "text": f"{side} not covered", "note": series.uncovered_sides[side]})
    return out


def findings_summary(findings) -> str:
    """Side findings in a few words for a worklist row: ``"R lesion 18 mm; L gland absent"`` ('' when none)."""
    parts = []
    for f in sorted(findings, key=lambda f: f.side):
        words = []
        if f.gland != Gland.SEEN:
            words.append(Gland(f.gland).label.split(" (")[0])
        if f.lesion_diameter_mm:
            words.append(f"lesion {f.lesion_diameter_mm:.0f} mm")
        if f.comment:
            words.append("comment")
        if words:
            parts.append(f"{f.side} {', '.join(words)}")
    return "; ".join(parts)


def _matches(row: dict, f: dict) -> bool:
    if "status" in f and row["box_status"] != f["status"]:
        return False
    if "verdict" in f and (row["verdict"] or "none") != f["verdict"]:
        return False
    if "label" in f and (row["label"] or "none") != f["label"]:
        return False
    # the text a reader has: the pseudonym, the series description, or the Series UID (the run dashboard copies it)
    if "q" in f and f["q"].strip().lower() not in f"{row['patient']} {row['series']} {row['series_uid']}".lower():
        return False
    return True


def next_unconfirmed(series: Series, user=None) -> tuple[dict | None, int]:
    """The next scan after ``series`` (same dataset, worklist order, wrapping) still needing review, and how many
    remain; with ``user``, among the scans that user may open (``Series.objects.visible_to``): one who opens a scan
    they submitted, not a member of its dataset ("Submitted studies"), is not told of other people's uploads."""
    rows = worklist_rows(series.dataset)["rows"]
    if user is not None and not Dataset.objects.visible_to(user).filter(pk=series.dataset.pk).exists():
        mine = set(Series.objects.visible_to(user).filter(pk__in=[r["id"] for r in rows]).values_list("pk", flat=True))
        rows = [r for r in rows if r["id"] in mine]
    ids = [r["id"] for r in rows]
    start = ids.index(series.pk) + 1 if series.pk in ids else 0
    todo = [r for r in rows[start:] + rows[:start] if r["box_status"] in ("none", "proposed") and r["id"] != series.pk]
    return (todo[0] if todo else None), len(todo)


def series_info(series: Series) -> dict:
    """What the viewer's corner overlay shows of a scan (text from DICOM headers: pages write it as text):
    pseudonymous patient id, study date, series description and number, slice thickness and spacing (mm),
    reconstruction kernel (a multi-valued one, as Siemens' ``Br38f\\3`` with its iterative strength, as "Br38f, 3":
    the store keeps DICOM's backslash), manufacturer and model, kVp, contrast."""
    study = series.study
    return {
        "patient": study.patient.pseudo_id, "study_date": study.study_date.isoformat() if study.study_date else None,
        "study_description": study.description, "series_description": series.series_description,
        "series_number": series.series_number, "slice_thickness_mm": series.slice_thickness_mm,
        "slice_spacing_mm": series.slice_spacing_mm,
        "kernel": ", ".join(v for v in (series.convolution_kernel or "").split("\\") if v) or None,
        "manufacturer": " ".join(p for p in (series.manufacturer, series.model_name) if p),
        "kvp": series.kvp, "contrast": series.contrast_agent, "modality": series.modality,
    }
