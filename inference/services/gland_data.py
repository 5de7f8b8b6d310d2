"""Per-gland training data (runs whose ``image.layout`` is ``side``, e.g. the ``fast`` preset): each labelled
scan's glands cropped on the fly from its stored volume and boxes with the core builder (only the needed region
of the volume is read), so a run builds the images it needs and nothing has to be built first.

Labels: the scan's label (its own, else its patient's) and, when the store's label has a ``side`` (R, L, RL or
none), which glands are abnormal (``inference.ml.supervision``); without it the abnormal scan's two glands form
one positive bag.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adrenal_site.storage import local_path
from annotations.models import Dataset, Label, Series
from inference.ml.geometry import Box
from inference.ml.images25d import build_scan_images, image_config, region_needed
from inference.ml.supervision import ScanSample
from inference.ml.volume import load_nifti_region

LABEL_VALUE = {"normal": 0, "abnormal": 1}


def is_gland_run(config: dict | None) -> bool:
    """True for a configuration that trains and judges each gland on its own crop."""
    return image_config(config or {})["layout"] == "side"


@dataclass
class GlandScan:
    series_id: int
    series_uid: str
    patient: str
    label: int
    sides: str | None  # abnormal sides when the store knows them ("R", "L", "RL", "none"), else None
    boxes: dict[str, Box]
    volume_path: Path


def _boxes(series: Series) -> dict[str, Box]:
    """Each side's confirmed box, else its proposed one."""
    out: dict[str, tuple[int, Box]] = {}
    for b in series.boxes.all():
        rank = 0 if b.status == "confirmed" else 1
        if b.side not in out or rank < out[b.side][0]:
            out[b.side] = (rank, Box(tuple(b.lps_min), tuple(b.lps_max)))
    return {s: box for s, (_, box) in out.items()}


def gland_scans(dataset: Dataset) -> list[GlandScan]:
    """The dataset's labelled scans that have a stored volume and a box on at least one side."""
    labels = Label.objects.filter(patient__dataset=dataset, is_current=True)
    by_patient = {l.patient_id: l for l in labels if l.series_id is None}
    by_series = {l.series_id: l for l in labels if l.series_id is not None}
    out = []
    qs = (Series.objects.filter(study__patient__dataset=dataset, is_scan=True)
          .select_related("study__patient", "volume").prefetch_related("boxes").order_by("pk"))
    for s in qs:
        label = by_series.get(s.pk) or by_patient.get(s.study.patient_id)
        if label is None or label.value not in LABEL_VALUE or not getattr(s, "volume", None) or not s.volume.file:
            continue
        boxes = _boxes(s)
        if not boxes:
            continue
        out.append(GlandScan(s.pk, s.series_uid, s.study.patient.pseudo_id, LABEL_VALUE[label.value],
                             (getattr(label, "side", "") or None), boxes, local_path(s.volume.file.name)))
    return out


def patient_labels(dataset: Dataset) -> dict[str, int]:
    """``{patient: 0|1}`` (abnormal when any scan is) over the scans a gland run can use."""
    out: dict[str, int] = {}
    for g in gland_scans(dataset):
        out[g.patient] = max(out.get(g.patient, 0), g.label)
    return out


def scan_sample(scan: GlandScan, config: dict) -> ScanSample:
    """One scan's per-gland images (float16) and what is known about them. Raises ValueError for a bad box
    or a volume the boxes miss."""
    region = region_needed(scan.boxes, config)
    volume = load_nifti_region(scan.volume_path, region, margin_mm=3.0)
    sides = build_scan_images(volume, scan.boxes, config)
    for si in sides.values():
        si.images = si.images.astype("float16")
    return ScanSample.from_images(str(scan.series_id), scan.patient, scan.label, sides, sides=scan.sides)


def gland_samples(dataset: Dataset, patients: set[str], config: dict) -> list[ScanSample]:
    """Samples of the dataset's usable scans of ``patients``."""
    return [scan_sample(g, config) for g in gland_scans(dataset) if g.patient in patients]
