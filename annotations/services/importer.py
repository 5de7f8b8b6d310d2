"""Importing a folder of DICOM (or NIfTI) files into a dataset: the Django side of ``inference.ml.dicom``.

``import_path(dataset, path, labels_csv=..., progress=..., user=...)`` returns an ``ImportReport`` with one
item per imported/skipped/failed series or file. Rules:

- Patients are pseudonymous: only ``source_key`` = HMAC-SHA256 (key ``settings.ADRENAL_PSEUDONYM_KEY``, else
  ``SECRET_KEY``) of the PatientID is kept; ``pseudo_id`` = ``P`` + its first 10 hex digits. A blank PatientID
  falls back to the patient folder of the ``{normal,abnormal}/<patient>/`` layout, else to the study key.
- Labels: the layout's top folder (``normal``/``abnormal``) gives a patient's label (source ``folder``) unless
  it already has one from a CSV or the UI; a labels CSV (columns ``patient`` or ``study_uid`` or
  ``series_uid``, and ``label``) overrides, per patient or per series.
- Idempotent and resumable: every instance is a ``SourceInstance`` keyed on its SOP Instance UID (or the
  fallback of ``inference.ml.dicom.headers``); a series whose instances are all known is skipped, and a
  series is committed in one transaction after its volume file was written atomically (a deterministic path
  under ``MEDIA_ROOT/volumes/``), so an interrupted import rerun ends complete without duplicates.
- One failing series or file never stops the batch: it becomes a ``failed`` item with the reason.
- Several passes under one SeriesInstanceUID are separate scans, keys ``<uid>#<label>``
  (``inference.ml.dicom.passes``), each with its note; odd instances of a series are ``skipped`` items one by
  one (also in ``Series.extra["excluded_instances"]``); resampling and reorientation are noted on the volume and
  the item. A NIfTI is stored on the canonical axes; its own grid stays in ``Series.extra["source_grid"]``.
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import logging
import os
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from adrenal_site.jobs.runner import JobCancelled
from adrenal_site.storage import discard_stored_on_error, local_path, location_for_task
from inference.ml.dicom import (
    NotDicom,
    SeriesError,
    SeriesGroup,
    exclusion_reason,
    group_series,
    is_nifti,
    load_series,
    read_header,
    read_nifti_entry,
    scan_files,
)
from inference.ml.dicom.headers import content_hash
from inference.ml.dicom.nifti import NiftiEntry, axis_codes, nifti_stem, other_volume_format
from inference.ml.supervision import parse_sides, side_labels
from inference.ml.volume import save_nifti

from ..models import Dataset, ImportItem, ImportReport, Label, Patient, Series, SourceInstance, Study, Volume
from ..models.imports import MAX_REASON_CHARS

log = logging.getLogger(__name__)
ProgressFn = Callable[[float, str], None]
LABEL_FOLDERS = {"normal": Label.Value.NORMAL, "abnormal": Label.Value.ABNORMAL}
LABEL_ALIASES = {"normal": "normal", "0": "normal", "negative": "normal", "abnormal": "abnormal", "1": "abnormal",
                 "positive": "abnormal"}
SHARP_KERNEL_WORDS = ("BONE", "LUNG", "SHARP", "B60", "B70", "B80", "I70", "BR64", "YA", "YB", "FC5", "FC8")


def _rel(path: Path, root: Path) -> str:
    try:
        return os.path.relpath(path, root if root.is_dir() else root.parent)
    except ValueError:
        return str(path)


def pseudonym_key(raw_id: str) -> str:
    """The keyed hash kept instead of a source patient identifier."""
    secret = getattr(settings, "ADRENAL_PSEUDONYM_KEY", "") or settings.SECRET_KEY
    return hmac.new(secret.encode(), f"patient:{raw_id}".encode(), hashlib.sha256).hexdigest()


@dataclass
class Layout:
    """What the original study's folder layout says about a file."""

    label: str | None = None
    patient: str | None = None


def layout_of(rel_path: str) -> Layout:
    """``.../{normal,abnormal}/<patient>/...`` gives a label and the patient folder."""
    parts = Path(rel_path).parts
    for i, part in enumerate(parts[:-1]):
        if part.lower() in LABEL_FOLDERS:
            patient = parts[i + 1] if i + 1 < len(parts) - 1 else None
            return Layout(LABEL_FOLDERS[part.lower()], patient)
    return Layout()


def root_layout_prefix(base: Path) -> str:
    """The part of the ``{normal,abnormal}/<patient>/`` layout that lies above an import's root: importing
    ``.../abnormal/P001`` (or a folder inside it) reads its files as ``abnormal/P001/...``, as importing
    ``...`` would. The last label folder among the root and its two parents counts (no folder higher up: the
    store's own folders never label an upload); ``""`` when there is none."""
    parts = Path(os.path.abspath(base)).parts
    for i in range(len(parts) - 1, max(len(parts) - 4, 0), -1):
        if parts[i].lower() in LABEL_FOLDERS:
            return "/".join(parts[i:]) + "/"
    return ""


def nifti_patient(rel_path: str, stem: str, layout: Layout, stem_shared: bool) -> tuple[str, str]:
    """``(raw patient id, study key)`` of a NIfTI file (a NIfTI carries no patient): the patient folder of the
    ``{normal,abnormal}/<patient>/`` layout; else, when several files of the import share this file's name (the
    ``<patient>/ct.nii.gz`` layout of TotalSegmentator's dataset), the folder holding it (its path in the import,
    so ``a/s1`` and ``b/s1`` are two patients); else the file's name, one
    patient per file (``case007.nii.gz``). The study key is the file's name, with its folder when names repeat."""
    folder = Path(rel_path).parent.as_posix()
    parent = "" if folder == "." else folder  # the folder's path in the import: a/s1 and b/s1 differ
    if layout.patient:
        raw_id = f"folder:{layout.patient}"
    elif stem_shared and parent:
        raw_id = f"folder:{parent}"
    else:
        raw_id = stem
    return raw_id, f"nifti:{stem}" if not (stem_shared and parent) else f"nifti:{parent}/{stem}"


def _date(value) -> date | None:
    s = str(value or "").strip()
    if len(s) >= 8 and s[:8].isdigit():
        try:
            return date(int(s[:4]), int(s[4:6]), int(s[6:8]))
        except ValueError:
            return None
    return None


def _float(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def source_grid(name: str, entry: NiftiEntry) -> dict:
    """The NIfTI file's own voxel grid, kept so tables that index the file (crop tables) still find their voxels
    after the volume was put on the store's canonical axes: ``file_ijk = to_source @ store_ijk`` (integers, or
    floats when oblique file axes were resampled)."""
    return {"file": name, "axes": axis_codes(entry.source_affine_lps), "affine_source": entry.affine_source,
            "shape_ijk": list(entry.source_shape_ijk),
            "affine_lps": [[float(v) for v in row] for row in entry.source_affine_lps],
            "to_source": [[int(v) if float(v).is_integer() else float(v) for v in row] for row in entry.to_source]}


class Importer:
    """One import run into a report (a rerun of the same report resumes it)."""

    def __init__(self, dataset: Dataset, root: Path, report: ImportReport, progress: ProgressFn | None, user):
        self.dataset, self.root, self.report, self.user = dataset, root, report, user
        self.layout_prefix = root_layout_prefix(root if root.is_dir() else root.parent)
        self.progress = progress or (lambda p, m="": None)
        self.touched_studies: set[int] = set()
        self.shared_stems: set[str] = set()  # NIfTI file stems that several files of this import carry
        self.nifti_patient_by_content = False  # each distinct NIfTI its own patient (``import_path``)
        self.imported_here = set(
            report.items.filter(status=ImportItem.Status.IMPORTED).values_list("series_id", flat=True)
        )

    def layout_of(self, rel_path: str) -> Layout:
        """:func:`layout_of` a file by its path in the import, else by the root's own folders
        (:func:`root_layout_prefix`)."""
        layout = layout_of(rel_path)
        return layout if layout.label or not self.layout_prefix else layout_of(self.layout_prefix + rel_path)

    # -- report items ------------------------------------------------------------------------------------
    def item(self, path: str, status: str, reason: str = "", series: Series | None = None) -> None:
        ImportItem.objects.create(report=self.report, path=path[:1000], status=status,
                                  reason=reason[:MAX_REASON_CHARS], series=series)

    # -- patients and studies --------------------------------------------------------------------------
    def patient_for(self, raw_id: str) -> Patient:
        key = pseudonym_key(raw_id)
        patient = Patient.objects.filter(dataset=self.dataset, source_key=key).first()
        if patient is not None:
            return patient
        for length in (10, 16, 63):  # a longer id only if another patient already holds the short one
            patient, _ = Patient.objects.get_or_create(dataset=self.dataset, pseudo_id="P" + key[:length],
                                                       defaults={"source_key": key})
            if patient.source_key == key:
                return patient
        raise RuntimeError("pseudonym collision")

    def raw_patient_id(self, group_patient_id: str, layout: Layout, study_key: str) -> str:
        if group_patient_id:
            return group_patient_id
        if layout.patient:
            return f"folder:{layout.patient}"
        return f"study:{study_key}"

    # -- one DICOM series --------------------------------------------------------------------------------
    def import_group(self, group: SeriesGroup) -> None:
        where = group.describe()
        for odd, reason in group.excluded:  # odd instances of the series: reported one by one, never stored
            self.item(_rel(odd.path, self.root), ImportItem.Status.SKIPPED, reason)
        for dropped, kept in group.duplicates:
            self.item(_rel(dropped.path, self.root), ImportItem.Status.SKIPPED,
                      f"duplicate of {_rel(kept.path, self.root)} (same SOP Instance UID {dropped.key})")
        keys = [h.key for h in group.instances]
        rows = SourceInstance.objects.filter(dataset=self.dataset, key__in=keys).values_list("key", "series_id", "path")
        known = {key: series for key, series, _ in rows}
        if known:
            series_ids = {v for v in known.values() if v}
            if series_ids & self.imported_here:
                paths = {_rel(h.path, self.root) for h in group.instances}
                if all(path in paths for _, _, path in rows):
                    return  # these files, imported by this same report before an interruption: their item is there
                # the same instances in another folder of this import (a second copy of a study, or other files
                # reusing its UIDs): said, not left out of the report
                elsewhere = sorted({str(Path(path).parent) for _, _, path in rows if path not in paths})
                self.item(where, ImportItem.Status.SKIPPED,
                          f"{len(known)} of {len(keys)} instances have the SOP Instance UIDs of series "
                          f"#{', #'.join(map(str, sorted(series_ids)))} imported from {', '.join(elsewhere)[:300]} in "
                          "this import: a copy (or files reusing its UIDs), not imported again")
                return
            if len(known) == len(keys):
                self.item(where, ImportItem.Status.SKIPPED,
                          f"already imported (series #{', #'.join(map(str, sorted(series_ids)))})",
                          series=Series.objects.filter(pk=min(series_ids)).first() if len(series_ids) == 1 else None)
            else:
                self.item(where, ImportItem.Status.SKIPPED,
                          f"{len(known)} of {len(keys)} instances already imported in series "
                          f"#{', #'.join(map(str, sorted(series_ids)))}; new instances are not merged into it")
            return
        reason = exclusion_reason(group)
        if reason:
            self.item(where, ImportItem.Status.SKIPPED, reason)
            return
        try:
            loaded = load_series(group)
        except SeriesError as exc:
            self.item(where, ImportItem.Status.FAILED, str(exc))
            return
        for dropped, kept in loaded.copies:
            self.item(_rel(dropped.path, self.root), ImportItem.Status.SKIPPED,
                      f"copy of {_rel(kept.path, self.root)} (same position and the same HU under another SOP "
                      "Instance UID)")
        first = group.first
        layout = self.layout_of(_rel(first.path, self.root))
        raw_id = self.raw_patient_id(first.patient_id, layout, group.study_key)
        meta = first.meta
        self.store(
            raw_id=raw_id, layout=layout, study_key=group.study_key, series_key=group.key,
            uid_source=group.uid_source, where=where, volume=loaded.volume, resampled=loaded.resampled,
            notes=loaded.notes,
            instances=[(h.key, _rel(h.path, self.root), content_hash(h.path)) for h in group.instances],
            study_fields={"study_date": _date(meta.get("StudyDate")), "study_time": str(meta.get("StudyTime", ""))[:32],
                          "description": str(meta.get("StudyDescription", ""))[:200]},
            series_fields=self.series_fields(group, loaded.slice_spacing_mm, loaded.tilt_deg, loaded.spacing),
        )

    def series_fields(self, group: SeriesGroup, slice_spacing: float, tilt_deg: float, spacing: str) -> dict:
        h, m = group.first, group.first.meta
        number = _float(m.get("SeriesNumber"))
        kernel = m.get("ConvolutionKernel") or ""
        if isinstance(kernel, list):
            kernel = "\\".join(map(str, kernel))
        extra = {"study_uid_source": group.study_uid_source, "instance_key_sources": sorted(
            {i.key_source for i in group.instances})}
        if tilt_deg:
            extra["gantry_tilt_deg"] = round(tilt_deg, 2)
        if m.get("AcquisitionNumber") is not None:
            extra["acquisition_number"] = m.get("AcquisitionNumber")
        if spacing != "regular":
            extra["spacing"] = spacing
        if group.pass_label:
            extra["pass"] = {"label": group.pass_label, "series_uid": group.parent_key, "note": group.pass_note}
        if group.excluded:
            extra["excluded_instances"] = [{"path": _rel(h.path, self.root), "reason": r} for h, r in group.excluded]
        return {
            "modality": h.modality[:16], "image_type": "\\".join(h.image_type)[:200],
            "body_part": str(m.get("BodyPartExamined", ""))[:64],
            "series_description": str(m.get("SeriesDescription", ""))[:200],
            "series_number": int(number) if number is not None else None,
            "slice_thickness_mm": _float(m.get("SliceThickness")), "slice_spacing_mm": round(slice_spacing, 4),
            "pixel_spacing_mm": list(h.pixel_spacing) if h.pixel_spacing else None,
            "orientation": list(h.orientation) if h.orientation else None,
            "convolution_kernel": str(kernel)[:64], "kvp": _float(m.get("KVP")),
            "exposure_mas": _float(m.get("Exposure")),
            "contrast_agent": str(m.get("ContrastBolusAgent", ""))[:200],
            "contrast_timing": str(m.get("ContrastBolusStartTime", ""))[:64],
            "manufacturer": str(m.get("Manufacturer", ""))[:100],
            "model_name": str(m.get("ManufacturerModelName", ""))[:100],
            "series_date": _date(m.get("SeriesDate")), "series_time": str(m.get("SeriesTime", ""))[:32],
            "instance_count": len(group.instances), "transfer_syntax": h.transfer_syntax[:64], "extra": extra,
        }

    # -- storing a volume and its rows -------------------------------------------------------------------
    def store(self, *, raw_id: str, layout: Layout, study_key: str, series_key: str, uid_source: str, where: str,
              volume, resampled: bool, notes: str, instances: list[tuple[str, str, str]], study_fields: dict,
              series_fields: dict) -> Series:
        name = hashlib.sha1(f"{self.dataset.pk}|{study_key}|{series_key}".encode()).hexdigest()[:24]
        rel_file = f"volumes/d{self.dataset.pk}/{name}.nii.gz"
        save_nifti(volume, local_path(rel_file))  # atomic; a rerun rewrites the same path
        # rows that cannot be written (the dataset deleted meanwhile) take the new CT with them: no row holds it
        with discard_stored_on_error(rel_file, unless_used_by=[(Volume.objects.all(), "file")]), transaction.atomic():
            patient = self.patient_for(raw_id)
            study, _ = Study.objects.get_or_create(patient=patient, study_uid=study_key[:128], defaults=study_fields)
            series, _ = Series.objects.update_or_create(
                study=study, series_uid=series_key[:128], defaults={"uid_source": uid_source, **series_fields}
            )
            Volume.objects.update_or_create(series=series, defaults={
                "file": rel_file, "shape": list(volume.shape),
                "spacing_mm": [round(float(s), 6) for s in volume.spacing],
                "affine": [[float(v) for v in row] for row in volume.affine],
                "resampled": resampled, "notes": notes,
            })
            SourceInstance.objects.bulk_create(
                [SourceInstance(dataset=self.dataset, series=series, key=k[:200], path=p[:1000], sha1=h)
                 for k, p, h in instances]
            )
            current = Label.objects.filter(patient=patient, series=None, is_current=True).first()
            if layout.label and current is None:
                Label.assign(patient, layout.label, Label.Source.FOLDER, user=self.user,
                             note=f"folder {layout.label}/ of import #{self.report.pk}")
            elif layout.label and current.value != layout.label:
                notes = "; ".join(filter(None, [notes, f"folder says {layout.label}, patient label stays "
                                                       f"{current.value} ({current.source})"]))
            self.item(where, ImportItem.Status.IMPORTED, notes, series=series)
        self.imported_here.add(series.pk)
        self.touched_studies.add(study.pk)
        return series

    # -- one NIfTI file ----------------------------------------------------------------------------------
    def import_nifti(self, path: Path) -> None:
        rel = _rel(path, self.root)
        digest = content_hash(path)
        key = f"nifti-sha1:{digest}"
        known = SourceInstance.objects.filter(dataset=self.dataset, key=key).first()
        if known:
            if known.series_id not in self.imported_here:
                self.item(rel, ImportItem.Status.SKIPPED, f"already imported (series #{known.series_id})",
                          series=known.series)
            return
        try:
            entry = read_nifti_entry(path)
        except ValueError as exc:
            self.item(rel, ImportItem.Status.FAILED, str(exc))
            return
        volume = entry.volume
        layout = self.layout_of(rel)
        stem = nifti_stem(path)
        if self.nifti_patient_by_content:
            raw_id, study_key = f"file:{key}", f"nifti:{key}"
        else:
            raw_id, study_key = nifti_patient(rel, stem, layout, stem in self.shared_stems)
        k, j, i = volume.shape
        self.store(
            raw_id=raw_id, layout=layout, study_key=study_key, series_key=key, uid_source="nifti", where=rel,
            volume=volume, resampled=entry.resampled, notes="; ".join(entry.notes), instances=[(key, rel, digest)],
            study_fields={"description": f"NIfTI {stem}"[:200]},
            series_fields={"modality": "CT", "series_description": stem[:200], "instance_count": 1,
                           "slice_spacing_mm": round(float(volume.spacing[2]), 4),
                           "slice_thickness_mm": round(float(volume.spacing[2]), 4),
                           "pixel_spacing_mm": [float(volume.spacing[1]), float(volume.spacing[0])],
                           "extra": {"source": "nifti", "source_grid": source_grid(path.name, entry)}},
        )

    # -- the whole run -----------------------------------------------------------------------------------
    def run(self, labels_csv: Path | None) -> ImportReport:
        self.progress(0, f"scanning {self.root.name}")
        headers, niftis = [], []
        for n, path in enumerate(scan_files(self.root), 1):
            rel = _rel(path, self.root)
            if is_nifti(path):
                niftis.append(path)
                continue
            try:
                headers.append(read_header(path))
            except NotDicom as exc:  # another volume format says so, by name
                self.item(rel, ImportItem.Status.SKIPPED, other_volume_format(path) or str(exc))
            except Exception as exc:  # noqa: BLE001 - a malformed header fails its file, not the batch
                self.item(rel, ImportItem.Status.FAILED, f"malformed DICOM header ({type(exc).__name__}: {exc})")
            if n % 200 == 0:
                self.progress(min(15.0, n / 200), f"read {n} files")
        if not headers and not niftis and not self.report.items.exists():
            self.item(self.root.name or ".", ImportItem.Status.SKIPPED, "no files found: nothing to import")
        groups = group_series(headers, self.root)
        total = max(1, len(groups) + len(niftis))
        self.progress(20, f"{len(headers)} DICOM files in {len(groups)} series, {len(niftis)} NIfTI files")
        for n, group in enumerate(groups, 1):
            try:
                self.import_group(group)
            except JobCancelled:
                raise
            except IntegrityError:
                self.item(group.describe(), ImportItem.Status.SKIPPED,
                          "imported at the same time by another import of the same files")
            except Exception as exc:  # noqa: BLE001 - one bad series never stops the batch
                log.exception("import of %s failed", group.describe())
                self.item(group.describe(), ImportItem.Status.FAILED, f"{type(exc).__name__}: {exc}")
            self.progress(20 + 75 * n / total, f"series {n}/{len(groups)}")
        stems = Counter(nifti_stem(path) for path in niftis)
        self.shared_stems = {stem for stem, count in stems.items() if count > 1}
        for n, path in enumerate(niftis, len(groups) + 1):
            try:
                self.import_nifti(path)
            except JobCancelled:
                raise
            except Exception as exc:  # noqa: BLE001
                log.exception("import of %s failed", path)
                self.item(_rel(path, self.root), ImportItem.Status.FAILED, f"{type(exc).__name__}: {exc}")
            self.progress(20 + 75 * n / total, f"file {n - len(groups)}/{len(niftis)} (NIfTI)")
        apply_series_rule(self.dataset, Study.objects.filter(pk__in=self.touched_studies))
        if labels_csv:
            apply_labels_csv(self.dataset, labels_csv, user=self.user, report=self.report)
        self.progress(100, "import finished: " + ", ".join(f"{v} {k}" for k, v in self.report.counts().items()))
        return self.report


def import_path(dataset: Dataset, path: str | os.PathLike, *, labels_csv: str | os.PathLike | None = None,
                progress: ProgressFn | None = None, user=None, report: ImportReport | None = None,
                source: str = "", nifti_patient_by_content: bool = False) -> ImportReport:
    """Import every DICOM series and NIfTI file under ``path`` (a local path) into ``dataset``; see the module
    docstring. A new report records ``source`` (e.g. an upload's file name), else ``path`` as a storage name
    when it is under the storage root (``adrenal_site.storage``), else as given. ``nifti_patient_by_content``:
    each distinct NIfTI file is a patient of its own (files submitted for a verdict, whose names say nothing about
    the patient: two users' ``ct.nii.gz`` are not one patient), instead of its name or folder.

    Passing the ``report`` of an interrupted run resumes it (its skipped/failed items are rebuilt)."""
    root = Path(path)
    source = source or location_for_task(path)
    if report is None:
        report = ImportReport.objects.create(dataset=dataset, source=source[:1000])
    else:
        report.items.exclude(status=ImportItem.Status.IMPORTED).delete()
    if not root.exists():
        ImportItem.objects.create(report=report, path=source[:1000], status=ImportItem.Status.FAILED,
                                  reason="path does not exist")
        return report
    with warnings.catch_warnings():  # pydicom warns about every quirk; the report says what matters
        warnings.simplefilter("ignore")
        importer = Importer(dataset, root, report, progress, user)
        importer.nifti_patient_by_content = nifti_patient_by_content
        return importer.run(Path(labels_csv) if labels_csv else None)


# -- the per-dataset series rule ---------------------------------------------------------------------------
def _is_soft_tissue(series: Series) -> bool:
    kernel = (series.convolution_kernel or "").upper()
    desc = (series.series_description or "").upper()
    return not any(w in kernel for w in SHARP_KERNEL_WORDS) and not any(w in desc for w in ("LUNG", "BONE"))


def thinnest_scan(series: list[Series]) -> Series:
    """The thinnest axial soft-tissue series of one study's stored ``series`` (ties: more slices, then the first
    stored): the 'thinnest' rule's scan, and the one judged when an upload for a verdict holds several."""
    pool = [s for s in series if _is_soft_tissue(s)] or series
    return min(pool, key=lambda s: (s.slice_thickness_mm or s.slice_spacing_mm or 99.0, -s.volume.shape[0], s.pk))


def apply_series_rule(dataset: Dataset, studies=None) -> None:
    """``all``: every imported series is a scan. ``thinnest``: per study, only the thinnest axial soft-tissue
    series (ties: more slices) is a scan; the others stay stored with the reason in ``extra``."""
    studies = Study.objects.filter(patient__dataset=dataset) if studies is None else studies
    for study in studies:
        series = list(Series.objects.filter(study=study, volume__isnull=False).select_related("volume"))
        if not series:
            continue
        chosen = {s.pk for s in series} if dataset.series_rule != Dataset.SeriesRule.THINNEST else {
            thinnest_scan(series).pk}
        for s in series:
            is_scan = s.pk in chosen
            extra = dict(s.extra or {})
            if is_scan:
                extra.pop("not_scan_reason", None)
            else:
                extra["not_scan_reason"] = "the dataset's 'thinnest' rule chose another series of this study"
            if s.is_scan != is_scan or extra != s.extra:
                Series.objects.filter(pk=s.pk).update(is_scan=is_scan, extra=extra)


# -- labels CSV --------------------------------------------------------------------------------------------
MAX_LABEL_ROWS = 100_000  # far more than any dataset's patients and scans; a bigger file is not a labels table
MAX_LABELS_BYTES = 16 * 1024**2  # 100 000 rows of 160 characters; the reader keeps every field of every row
MAX_LABEL_COLUMNS = 64
LABEL_ID_COLUMNS = ("series_uid", "study_uid", "patient", "patient_id")


class LabelsCsvInvalid(ValueError):
    """A labels CSV that cannot be read as a table of labels; the message names the problem (and the line)."""


def read_labels_csv(csv_path: str | os.PathLike) -> tuple[dict[str, str], list[tuple[int, dict]]]:
    """The one reader of a labels CSV: ``(columns, rows)``, ``columns`` mapping each lower-cased header to its
    spelling in the file and ``rows`` ``[(line number, row dict), ...]``. Raises :class:`LabelsCsvInvalid` naming
    the problem: unreadable, not UTF-8 text, malformed CSV (with the line), no ``label`` column or no id column,
    or more than ``MAX_LABEL_ROWS`` rows. Uploads and imports check a file with it before anything is stored,
    and the import applies what it returns."""
    name = Path(csv_path).name
    try:
        size = os.path.getsize(csv_path)
        if size > MAX_LABELS_BYTES:
            raise LabelsCsvInvalid(f"labels CSV {name} is {size / 1024**2:.0f} MB, over the limit of "
                                   f"{MAX_LABELS_BYTES / 1024**2:.0f} MB for a labels table")
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            try:
                if len(reader.fieldnames or []) > MAX_LABEL_COLUMNS:
                    raise LabelsCsvInvalid(f"labels CSV {name} has {len(reader.fieldnames)} columns (limit "
                                           f"{MAX_LABEL_COLUMNS})")
                fields = {f.strip().lower(): f for f in (reader.fieldnames or []) if f is not None}
                if "label" not in fields or not any(c in fields for c in LABEL_ID_COLUMNS):
                    raise LabelsCsvInvalid(f"labels CSV {name} needs a 'label' column and one of 'patient', "
                                           "'study_uid', 'series_uid'")
                rows = []
                for row in reader:
                    if len(rows) >= MAX_LABEL_ROWS:
                        raise LabelsCsvInvalid(f"labels CSV {name} has more than {MAX_LABEL_ROWS} rows")
                    if len(row.get(None) or ()) > MAX_LABEL_COLUMNS:  # DictReader keeps extra fields there
                        raise LabelsCsvInvalid(f"labels CSV {name} line {reader.line_num} has "
                                               f"{len(row[None]) + len(reader.fieldnames)} fields (limit "
                                               f"{MAX_LABEL_COLUMNS})")
                    rows.append((reader.line_num, row))
            except csv.Error as exc:
                raise LabelsCsvInvalid(f"labels CSV {name} is malformed at line {reader.line_num + 1}: {exc}") from None
    except UnicodeDecodeError:
        raise LabelsCsvInvalid(f"labels CSV {name} is not UTF-8 text (save it as CSV UTF-8)") from None
    except OSError as exc:
        raise LabelsCsvInvalid(f"labels CSV {name} unreadable: {exc.strerror or exc}") from None
    return fields, rows


def apply_labels_csv(dataset: Dataset, csv_path: str | os.PathLike, *, user=None,
                     report: ImportReport | None = None) -> dict[str, int]:
    """Apply a CSV of labels (columns ``label`` and one of ``patient``, ``study_uid``, ``series_uid``, optionally
    ``side``: which adrenal is abnormal, ``R``, ``L``, ``RL`` or ``none``; empty = not known): a row with
    a patient labels that patient, a row with only a series (or study) UID overrides that series' label.
    ``patient`` matches the source PatientID (through its keyed hash), the file stem of a NIfTI import, the
    pseudonymous id, or the patient folder of the ``{normal,abnormal}/<patient>/`` layout; a name that matches
    several patients (the same folder name in an earlier import into the dataset) labels the one of this import
    (``report``'s), else it is a failed item naming them. Unmatched or invalid rows become report items; a file that cannot be read (:func:`read_labels_csv`) becomes one failed item and
    labels nothing, while the scans imported beside it stay imported."""
    counts = {"applied": 0, "unmatched": 0, "invalid": 0}

    def note(row_no: int, status: str, reason: str) -> None:
        if report is not None:
            ImportItem.objects.create(report=report, path=f"{Path(csv_path).name}:{row_no}", status=status,
                                      reason=reason[:MAX_REASON_CHARS])

    try:
        fields, rows = read_labels_csv(csv_path)
    except LabelsCsvInvalid as exc:
        note(0, ImportItem.Status.FAILED, str(exc))
        counts["invalid"] += 1
        return counts
    id_cols = [c for c in LABEL_ID_COLUMNS if c in fields]
    this_import = set() if report is None else set(Patient.objects.filter(
        studies__series__importitem__report=report).values_list("pk", flat=True))
    for row_no, row in rows:
        value = LABEL_ALIASES.get(str(row.get(fields["label"], "")).strip().lower())
        if value is None:
            note(row_no, ImportItem.Status.FAILED, f"label {row.get(fields['label'])!r} is not normal/abnormal")
            counts["invalid"] += 1
            continue
        side = ""
        if "side" in fields:
            try:
                sides = parse_sides(row.get(fields["side"]))
                if sides is not None:
                    side_labels(1 if value == "abnormal" else 0, sides)  # raises on a contradiction
                    side = "".join(s for s in "RL" if s in sides) or "none"
            except ValueError as exc:
                note(row_no, ImportItem.Status.FAILED, f"side {row.get(fields['side'])!r}: {exc}")
                counts["invalid"] += 1
                continue
        ids = {c: str(row.get(fields[c], "") or "").strip() for c in id_cols}
        targets = _label_targets(dataset, ids)
        if len({p.pk for p, _ in targets}) > 1 and (ids.get("patient") or ids.get("patient_id")):
            # one name, several patients (the same folder name in an earlier import into this dataset): the
            # patients of this import, else none, never every patient of that name
            ours = [(p, s) for p, s in targets if p.pk in this_import] if this_import else []
            if len(ours) != 1:
                named = ", ".join(sorted(p.pseudo_id for p, _ in targets))
                note(row_no, ImportItem.Status.FAILED, f"labels CSV: patient {ids.get('patient') or ids.get('patient_id')!r} "
                     f"matches {len(targets)} patients of the dataset ({named}); name one by its pseudonymous id")
                counts["invalid"] += 1
                continue
            targets = ours
        if not targets:
            ids = ", ".join(f"{c}={row.get(fields[c])}" for c in id_cols if row.get(fields[c]))
            note(row_no, ImportItem.Status.SKIPPED, f"labels CSV: nothing in the dataset matches {ids}")
            counts["unmatched"] += 1
            continue
        for patient, series in targets:
            Label.assign(patient, value, Label.Source.CSV, series=series, user=user, side=side,
                         note=f"{Path(csv_path).name} row {row_no}")
        counts["applied"] += 1
    return counts


def _label_targets(dataset: Dataset, ids: dict[str, str]) -> list[tuple[Patient, Series | None]]:
    """A row naming a patient labels the patient (its other columns are ignored, as in a ground-truth CSV with
    one row per series); a row without one labels its series, or each series of its study, as an override."""
    series_qs = Series.objects.filter(study__patient__dataset=dataset).select_related("study__patient")
    if ids.get("patient") or ids.get("patient_id"):
        return _patients_named(dataset, ids.get("patient") or ids.get("patient_id") or "")
    if ids.get("series_uid"):
        return [(s.study.patient, s) for s in series_qs.filter(series_uid=ids["series_uid"])]
    if ids.get("study_uid"):
        return [(s.study.patient, s) for s in series_qs.filter(study__study_uid=ids["study_uid"])]
    return []


def _patients_named(dataset: Dataset, raw: str) -> list[tuple[Patient, None]]:
    keys = [pseudonym_key(raw), pseudonym_key(f"folder:{raw}")]
    patients = Patient.objects.filter(dataset=dataset, source_key__in=keys) | Patient.objects.filter(
        dataset=dataset, pseudo_id=raw)
    found = list(patients.distinct())
    if not found:  # the patient folder of the {normal,abnormal}/<patient>/ layout, as stored instance paths show
        in_folder = Q()
        for top in LABEL_FOLDERS:
            in_folder |= Q(path__startswith=f"{top}/{raw}/") | Q(path__contains=f"/{top}/{raw}/")
        series_ids = SourceInstance.objects.filter(in_folder, dataset=dataset).values("series_id")
        # or an import whose root was that patient folder (or a folder inside it): its paths start below it
        as_root = Q()
        for top in LABEL_FOLDERS:
            as_root |= (Q(report__source=f"{top}/{raw}") | Q(report__source__startswith=f"{top}/{raw}/")
                        | Q(report__source__endswith=f"/{top}/{raw}") | Q(report__source__contains=f"/{top}/{raw}/"))
        rooted = ImportItem.objects.filter(as_root, report__dataset=dataset, series__isnull=False).values("series_id")
        found = list(Patient.objects.filter(Q(studies__series__in=series_ids) | Q(studies__series__in=rooted),
                                            dataset=dataset).distinct())
    return [(p, None) for p in found]


# -- the --json shape --------------------------------------------------------------------------------------
def report_json(report: ImportReport) -> dict:
    """``{"dataset", "series": [...], "skipped": [{"path", "reason"}], "failed": [...]}`` of one import; each series
    entry has ``notes``: how it was split, resampled or reoriented."""
    series = []
    items = report.items.select_related("series__study__patient", "series__volume")
    for item in items:
        s = item.series
        if item.status != ImportItem.Status.IMPORTED or s is None:
            continue
        vol = getattr(s, "volume", None)
        series.append({
            "id": s.pk, "series_uid": s.series_uid, "study_uid": s.study.study_uid, "patient": s.study.patient.pseudo_id,
            "label": s.label, "volume_path": str(local_path(vol.file.name)) if vol else None,
            "shape": vol.shape if vol else None, "spacing_mm": vol.spacing_mm if vol else None,
            "notes": item.reason,
        })
    return {
        "dataset": report.dataset.name,
        "series": series,
        "skipped": [{"path": i.path, "reason": i.reason} for i in items if i.status == ImportItem.Status.SKIPPED],
        "failed": [{"path": i.path, "reason": i.reason} for i in items if i.status == ImportItem.Status.FAILED],
    }
