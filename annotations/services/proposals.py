"""Proposing crop boxes for stored scans: load each volume, propose, save through ``boxes.save_box``.

Never overwrites a confirmed box (``save_box`` refuses proposals over confirmed boxes, and a series with a
confirmed box is never marked "not covered"). Running it twice gives the same boxes (idempotent): the
proposal is a pure function of the stored volume (or masks), and an unchanged box is not saved again.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from inference.ml.proposals import Proposal, find_mask_files, propose, propose_from_masks
from inference.ml.volume import load_nifti

from ..models import CropBox, Series
from .boxes import mark_not_covered, save_box, set_uncovered_sides

ProgressFn = Callable[[float, str], None]
PERSON_SOURCES = ("ui", "csv")  # boxes a person drew or imported, never removed by a proposal


def mask_hints(series: Series) -> list[str]:
    """Names a scan's masks may be stored under in a ``--masks`` folder: series UID, NIfTI stem, patient id."""
    hints = [series.series_uid, series.series_description, series.study.patient.pseudo_id]
    for inst in series.instances.all()[:1]:
        name = Path(inst.path).name
        for suffix in (".nii.gz", ".nii"):
            if name.endswith(suffix):
                hints.append(name[: -len(suffix)])
    return [h for h in hints if h]


def proposal_for(series: Series, masks: str | None = None, *, only_scan: bool = False) -> Proposal:
    """The proposal for one scan: from its masks when ``masks`` has some for it, else from landmarks.
    ``only_scan``: the scan is the only one proposed, so ``masks`` itself may be its masks."""
    if masks:
        for hint in mask_hints(series):
            found = find_mask_files(masks, hint)
            if found is not None:
                return propose_from_masks(found)
        found = find_mask_files(masks) if only_scan else None
        if found is not None:
            return propose_from_masks(found)
    volume = load_nifti(series.volume.file.path)
    return propose(volume)


def _same(box: CropBox | None, proposed) -> bool:
    return box is not None and [round(v, 4) for v in box.lps_min] == [round(v, 4) for v in proposed.lps_min] \
        and [round(v, 4) for v in box.lps_max] == [round(v, 4) for v in proposed.lps_max]


def apply_proposal(series: Series, proposal: Proposal) -> None:
    """Store a proposal on a series, per side: each proposed box with its confidence, method (the box's
    ``source``) and note; each side whose gland is outside the field of view in ``Series.uncovered_sides`` with
    what is missing (a box an earlier proposal put there removed), so a scan of one gland keeps that gland's box.
    The scan is "not covered" only when neither side is. Confirmed boxes are left alone, as are boxes a person
    drew or imported on a side found outside, and a "not covered" that a person set (the proposer notes its own
    in ``Series.extra["box_proposal"]``)."""
    auto_reason = (series.extra or {}).get("box_proposal", {}).get("not_covered_reason")
    if series.box_status == Series.BoxStatus.NOT_COVERED and series.box_status_reason != auto_reason:
        return
    existing = {b.side: b for b in series.boxes.all()}
    confirmed = {s for s, b in existing.items() if b.status == CropBox.Status.CONFIRMED}
    uncovered = {s: p.note or "outside the field of view" for s, p in proposal.sides.items()
                 if p.status != "proposed"}
    if proposal.status != "proposed":
        if not confirmed:
            mark_not_covered(series, proposal.reason)
            Series.objects.filter(pk=series.pk).update(uncovered_sides=uncovered)
            series.extra = {**(series.extra or {}), "box_proposal": {"not_covered_reason": proposal.reason[:300]}}
            Series.objects.filter(pk=series.pk).update(extra=series.extra)
        return
    for side, box in proposal.boxes.items():
        sp = proposal.sides.get(side)
        method = (sp.method if sp and sp.method else proposal.method) or "atlas"
        confidence = round(float(sp.confidence), 3) if sp is not None else None
        note = sp.note if sp is not None else ""
        old = existing.get(side)
        if side in confirmed or (_same(old, box) and old.source == method and old.confidence == confidence
                                 and old.note == note and series.box_status != Series.BoxStatus.NOT_COVERED):
            continue
        save_box(series, side, box.lps_min, box.lps_max, status=CropBox.Status.PROPOSED, source=method,
                 confidence=confidence, note=note)
    # a box an earlier proposal put on a side now found outside the field of view goes; one a person drew or
    # imported stays (and that side is then not listed as uncovered: it has a box)
    stale = [s for s, b in existing.items() if s in uncovered and s not in confirmed and b.source not in PERSON_SOURCES]
    if stale:
        series.boxes.filter(side__in=stale, status=CropBox.Status.PROPOSED).delete()
    set_uncovered_sides(series, uncovered)


def series_entry(series: Series, error: str = "") -> dict:
    """One series as ``propose_crops --json`` prints it: status, boxes (with confidence, method and note), the
    scan's reason when "not covered", and ``uncovered`` (sides outside the field of view, with what is
    missing)."""
    series.refresh_from_db(fields=["box_status", "box_status_reason", "uncovered_sides"])
    entry = {"id": series.pk, "series_uid": series.series_uid, "status": series.box_status,
             "boxes": {b.side: {"lps_min": b.lps_min, "lps_max": b.lps_max, "status": b.status,
                                "confidence": b.confidence, "method": b.source, "note": b.note}
                       for b in series.boxes.all()}}
    if series.box_status_reason:
        entry["reason"] = series.box_status_reason
    if series.uncovered_sides:
        entry["uncovered"] = dict(series.uncovered_sides)
    if error:
        entry["error"] = error
    return entry


def propose_series(series_list: Iterable[Series], *, masks: str | None = None,
                   progress: ProgressFn | None = None) -> dict:
    """Propose for each series; a failing scan is reported with its error and the others go on."""
    series_list = list(series_list)
    if masks and len(series_list) > 1 and find_mask_files(masks) is not None:
        raise ValueError(f"{masks} holds the masks of one scan, but {len(series_list)} scans are to be proposed: "
                         f"give a folder with one entry per scan (named by series UID, NIfTI stem or patient id)")
    out = []
    for n, series in enumerate(series_list):
        if progress:
            progress(100.0 * n / max(1, len(series_list)), f"proposing {n + 1}/{len(series_list)}")
        error = ""
        try:
            if not hasattr(series, "volume"):
                raise ValueError("the series has no stored volume")
            apply_proposal(series, proposal_for(series, masks, only_scan=len(series_list) == 1))
        except Exception as exc:  # noqa: BLE001 - one bad scan never stops the batch
            error = f"{type(exc).__name__}: {exc}"
        out.append(series_entry(series, error))
    return {"series": out}


def scans_of(dataset_id: int | None = None, series_ids: list[int] | None = None):
    qs = Series.objects.filter(is_scan=True).select_related("study__patient", "volume").order_by("id")
    if dataset_id is not None:
        qs = qs.filter(study__patient__dataset_id=dataset_id)
    if series_ids:
        qs = qs.filter(pk__in=series_ids)
    return qs
