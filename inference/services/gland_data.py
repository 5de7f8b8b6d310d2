"""Per-gland training data (runs whose ``image.layout`` is ``side``, e.g. the ``fast`` preset): each labelled
scan's glands cropped on the fly from its stored volume and boxes with the core builder (only the needed region
of the volume is read), so a run builds the images it needs and nothing has to be built first.

Labels: the scan's label (its own, else its patient's) and, when the store's label has a ``side`` (R, L, RL or
none), which glands are abnormal (``inference.ml.supervision``); without it the abnormal scan's two glands form
one positive bag. A side the label calls abnormal that has a lesion marker from the viewer gets image labels:
the images whose slices meet the marked lesion's z range are abnormal, those clear of it normal
(:func:`marker_labels`, taken once when the run is made and kept in its config as ``lesion_markers``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adrenal_site.storage import local_path
from annotations.models import Dataset, Label, Series
from annotations.services.findings import dataset_lesion_markers
from inference.ml.geometry import Box
from inference.ml.images25d import build_scan_images, image_config, region_needed
from inference.ml.supervision import ScanSample, side_labels
from inference.ml.volume import UnreadableVolume, load_nifti_region

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
    return labelled_scans(dataset)[0]


def labelled_scans(dataset: Dataset) -> tuple[list[GlandScan], list[dict]]:
    """The dataset's labelled scans in one pass: ``(usable, left_out)``, the scans a run can use
    (:func:`gland_scans`) and ``[{"series", "patient", "why"}]`` for those it cannot (no stored volume; no crop box
    on either side: proposals pending, failed or not covered), so a run can say what it left out."""
    labels = Label.objects.filter(patient__dataset=dataset, is_current=True)
    by_patient = {l.patient_id: l for l in labels if l.series_id is None}
    by_series = {l.series_id: l for l in labels if l.series_id is not None}
    qs = (Series.objects.filter(study__patient__dataset=dataset, is_scan=True)
          .select_related("study__patient", "volume").prefetch_related("boxes").order_by("pk"))
    usable, left_out = [], []
    for s in qs:
        label = by_series.get(s.pk) or by_patient.get(s.study.patient_id)
        if label is None or label.value not in LABEL_VALUE:
            continue
        patient = s.study.patient.pseudo_id
        boxes = _boxes(s)
        if not getattr(s, "volume", None) or not s.volume.file:
            left_out.append({"series": s.pk, "patient": patient, "why": "no stored volume"})
        elif not boxes:
            left_out.append({"series": s.pk, "patient": patient,
                             "why": "no crop box on either side (proposals pending, failed or not covered)"})
        else:
            usable.append(GlandScan(s.pk, s.series_uid, patient, LABEL_VALUE[label.value],
                                    (getattr(label, "side", "") or None), boxes, local_path(s.volume.file.name)))
    return usable, left_out


def patient_labels(scans: list[GlandScan]) -> dict[str, int]:
    """``{patient: 0|1}`` (abnormal when any scan is) over ``scans`` (:func:`gland_scans`)."""
    out: dict[str, int] = {}
    for g in scans:
        out[g.patient] = max(out.get(g.patient, 0), g.label)
    return out


def marker_labels(dataset: Dataset, held_out: set[str] = frozenset()) -> dict:
    """What the viewer's lesion markers give a per-gland run of ``dataset``: the z range (LPS mm, the marker's
    centre z ± its radius) of each marked side that the scan's label calls abnormal and whose crop box the
    range meets; those sides train on image labels. Other markers are listed with why they are not used (a
    patient in ``held_out``, the run's test patients; the label does not say which side is abnormal, or calls
    the side normal; no box on that side, or the marker outside it).

    Returns ``{"sides": n, "scans": m, "z_mm": {"<series id>": {"R": [[lo, hi]]}}, "unused": [{"series",
    "side", "why"}]}``; scans without markers are not in it and keep their bag labels."""
    markers = dataset_lesion_markers(dataset=dataset)
    z_mm: dict[str, dict[str, list[list[float]]]] = {}
    unused = []
    for g in gland_scans(dataset):
        for side, marker in sorted(markers.get(g.series_id, {}).items()):
            lo, hi = marker.centre_lps[2] - marker.radius_mm, marker.centre_lps[2] + marker.radius_mm
            why = "a test patient: held out from training" if g.patient in held_out else _marker_unused(g, side, lo, hi)
            if why:
                unused.append({"series": g.series_id, "side": side, "why": why})
            else:
                z_mm.setdefault(str(g.series_id), {})[side] = [[round(lo, 3), round(hi, 3)]]
    return {"sides": sum(len(v) for v in z_mm.values()), "scans": len(z_mm), "z_mm": z_mm, "unused": unused}


def _marker_unused(scan: GlandScan, side: str, lo: float, hi: float) -> str:
    """Why a lesion marker spanning z ``lo``..``hi`` on ``side`` gives no image labels ('' when it does)."""
    try:
        label = side_labels(scan.label, scan.sides)[side]
    except ValueError as exc:  # a label stored before its side was checked
        return f"the label contradicts itself: {exc}"
    box = scan.boxes.get(side)
    if label is None:
        return "the label does not say which side is abnormal"
    if label == 0:
        return "the label calls this side normal"
    if box is None:
        return "no crop box on this side"
    if hi < box.lps_min[2] or lo > box.lps_max[2]:
        return "the marker is outside this side's crop box"
    return ""


def scan_sample(scan: GlandScan, config: dict) -> ScanSample:
    """One scan's per-gland images (float16) and what is known about them, with image labels on the sides that
    the run's ``lesion_markers`` give z ranges for. Raises ValueError for a bad box or a volume the boxes miss,
    ``UnreadableVolume`` naming the scan and its patient for a stored file that cannot be read."""
    region = region_needed(scan.boxes, config)
    try:
        volume = load_nifti_region(scan.volume_path, region, margin_mm=3.0)
    except UnreadableVolume as exc:  # the fold's failure names the scan, not only a stored file's hashed name
        raise UnreadableVolume(f"scan #{scan.series_id} of patient {scan.patient}: {exc}") from exc
    sides = build_scan_images(volume, scan.boxes, config)
    for si in sides.values():
        si.images = si.images.astype("float16")
    marked = ((config.get("lesion_markers") or {}).get("z_mm") or {}).get(str(scan.series_id))
    lesion_z = {s: [tuple(r) for r in ranges] for s, ranges in marked.items()} if marked else None
    return ScanSample.from_images(str(scan.series_id), scan.patient, scan.label, sides, sides=scan.sides,
                                  lesion_z=lesion_z)


def gland_samples(dataset: Dataset, patients: set[str], config: dict) -> list[ScanSample]:
    """Samples of the dataset's usable scans of ``patients``."""
    return [scan_sample(g, config) for g in gland_scans(dataset) if g.patient in patients]
