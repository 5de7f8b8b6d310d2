"""Per-side findings: gland seen / not visualised / absent, an optional lesion marker and a comment, versioned.

The one way to write them is ``save_finding`` (versions checked as for boxes: ``VersionConflict``; bad input:
``FindingInvalid`` naming the field). ``lesion_markers`` hands the lesion markers to code that turns them into
labels (e.g. per-image lesion labels for 2.5D training) without touching the models.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.utils import timezone

from adrenal_site.locking import lock
from inference.ml.geometry import volume_extent

from ..models import CropBox, Gland, Series, SideFinding, SideFindingVersion
from .boxes import SIDE_NAMES, VersionConflict

MAX_LESION_DIAMETER_MM = 200.0
MAX_COMMENT_CHARS = 2000
UNSET = object()


class FindingInvalid(ValueError):
    """Findings that cannot be stored; ``field`` names the offending input."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class LesionMarker:
    """A marked lesion: ``centre_lps`` ``(x, y, z)`` mm in patient LPS and ``diameter_mm`` (longest axial
    diameter as the reader measured it), with the findings version and who saved it."""

    side: str
    centre_lps: tuple[float, float, float]
    diameter_mm: float
    version: int
    updated_by: str | None

    @property
    def radius_mm(self) -> float:
        return self.diameter_mm / 2

    def contains(self, xyz, tol_mm: float = 0.0) -> np.ndarray:
        """Whether LPS points ``(..., 3)`` mm lie in the marker's sphere."""
        d = np.linalg.norm(np.asarray(xyz, float) - np.asarray(self.centre_lps), axis=-1)
        return d <= self.radius_mm + tol_mm


def _check_lesion(series: Series, centre, diameter) -> tuple[list[float] | None, float | None]:
    if centre is None and diameter is None:
        return None, None
    if centre is None or diameter is None:
        raise FindingInvalid("lesion_centre_lps" if centre is None else "lesion_diameter_mm",
                             "a lesion marker needs both its centre and its diameter (or neither)")
    try:
        c = [float(v) for v in centre]
    except (TypeError, ValueError):
        raise FindingInvalid("lesion_centre_lps", "expected [x, y, z] in mm") from None
    if len(c) != 3 or not all(np.isfinite(c)):
        raise FindingInvalid("lesion_centre_lps", "expected three finite numbers [x, y, z] in mm")
    d = float(diameter)
    if not np.isfinite(d) or not 0 < d <= MAX_LESION_DIAMETER_MM:
        raise FindingInvalid("lesion_diameter_mm", f"must be more than 0 and at most {MAX_LESION_DIAMETER_MM:g} mm")
    affine = np.asarray(series.volume.affine, float)
    extent = volume_extent(affine, series.volume.shape).expanded(np.abs(affine[:3, :3]) @ np.full(3, 0.5))
    if not extent.contains(np.asarray(c), tol_mm=1e-3):
        raise FindingInvalid("lesion_centre_lps", "the lesion centre is outside the volume")
    return c, d


def _check_lesion_side(series: Series, side: str, centre: list[float]) -> None:
    """A marker for ``side`` whose centre lies in the other gland's box and not in its own is refused: the reader
    had the other side selected (the viewer opens on R), and a marker stored on the wrong side would credit the
    wrong gland (lesion labels, sensitivity by lesion size). Scans without the other side's box are not checked."""
    other = "L" if side == "R" else "R"
    boxes = {b.side: b for b in CropBox.objects.filter(series=series) if b.lps_min and b.lps_max}
    c = np.asarray(centre, float)

    def inside(box) -> bool:
        return box is not None and bool(np.all(c >= np.asarray(box.lps_min) - 1e-3)
                                        and np.all(c <= np.asarray(box.lps_max) + 1e-3))

    if inside(boxes.get(other)) and not inside(boxes.get(side)):
        raise FindingInvalid(
            "lesion_centre_lps",
            f"the lesion centre lies in the {other} ({SIDE_NAMES[other]}) gland's box, not the {side} box: it was not "
            f"stored as a {SIDE_NAMES[side]} lesion; select {other} (key {other.lower()}) and mark it there")


def save_finding(
    series: Series,
    side: str,
    *,
    gland: str | object = UNSET,
    lesion_centre_lps: Sequence[float] | None | object = UNSET,
    lesion_diameter_mm: float | None | object = UNSET,
    comment: str | object = UNSET,
    user=None,
    expected_version: int | None = None,
    restored_from: int | None = None,
) -> SideFinding:
    """Create or update the findings of ``side`` on ``series`` and record the new version.

    Fields left out keep their current value (a new record starts from gland seen, no lesion, no comment); pass
    ``lesion_centre_lps=None, lesion_diameter_mm=None`` to clear the marker. ``expected_version``: the version
    edited (0: none yet; None skips the check); a mismatch raises ``VersionConflict``. ``FindingInvalid`` for
    an unknown gland value, a lesion marker on a gland marked absent, half a lesion marker, a centre outside the
    volume, a new centre inside the other side's box and not this side's (``_check_lesion_side``), a diameter not
    in (0, 200] mm, or a comment over 2000 characters."""
    if side not in CropBox.Side.values:
        raise FindingInvalid("side", "must be R or L")
    if not hasattr(series, "volume"):
        raise FindingInvalid("series", "this series has no volume yet")
    with transaction.atomic():
        lock(Series, series.pk)  # the first findings of a side have no row to lock (as ``save_box``)
        finding = SideFinding.objects.select_for_update().filter(series=series, side=side).first()
        current = finding.version if finding else 0
        if expected_version is not None and expected_version != current:
            raise VersionConflict(finding)
        if finding is None:
            finding = SideFinding(series=series, side=side, version=0)
        new_gland = finding.gland if gland is UNSET else gland
        if new_gland not in Gland.values:
            raise FindingInvalid("gland", f"must be one of {', '.join(Gland.values)}")
        centre = finding.lesion_centre_lps if lesion_centre_lps is UNSET else lesion_centre_lps
        diameter = finding.lesion_diameter_mm if lesion_diameter_mm is UNSET else lesion_diameter_mm
        centre, diameter = _check_lesion(series, centre, diameter)
        if centre is not None and centre != finding.lesion_centre_lps:  # a marker placed or moved now
            _check_lesion_side(series, side, centre)
        if new_gland == Gland.ABSENT and diameter is not None:  # no gland, no adrenal lesion to mark on it
            raise FindingInvalid("gland", "a gland marked absent cannot carry a lesion marker: clear the marker, or "
                                          "mark the gland seen or not visualised (a mass can hide the gland)")
        text = finding.comment if comment is UNSET else comment
        if not isinstance(text, str):
            raise FindingInvalid("comment", "must be text")
        if len(text) > MAX_COMMENT_CHARS:
            raise FindingInvalid("comment", f"at most {MAX_COMMENT_CHARS} characters ({len(text)} given)")
        finding.gland, finding.lesion_centre_lps, finding.lesion_diameter_mm = new_gland, centre, diameter
        finding.comment, finding.updated_by, finding.updated_at = text, user, timezone.now()
        finding.version += 1
        finding.save()
        SideFindingVersion.objects.create(
            finding=finding, version=finding.version, gland=finding.gland, lesion_centre_lps=centre,
            lesion_diameter_mm=diameter, comment=text, restored_from=restored_from, updated_by=user,
            updated_at=finding.updated_at)
    return finding


def restore_finding(series: Series, side: str, version: int, *, user=None, expected_version: int) -> SideFinding:
    """Save the findings as they were at ``version`` as a new version (``LookupError`` if there is none)."""
    old = SideFindingVersion.objects.filter(finding__series=series, finding__side=side, version=version).first()
    if old is None:
        raise LookupError(f"the {side} findings have no version {version}")
    return save_finding(series, side, gland=old.gland, lesion_centre_lps=old.lesion_centre_lps,
                        lesion_diameter_mm=old.lesion_diameter_mm, comment=old.comment, user=user,
                        expected_version=expected_version, restored_from=version)


def finding_json(finding: SideFinding | None) -> dict | None:
    """A side's findings as the API and the viewer show them (None when nothing was recorded)."""
    if finding is None:
        return None
    return {"side": finding.side, "gland": finding.gland, "gland_display": finding.get_gland_display(),
            "lesion_centre_lps": finding.lesion_centre_lps, "lesion_diameter_mm": finding.lesion_diameter_mm,
            "comment": finding.comment, "version": finding.version,
            "updated_by": finding.updated_by.username if finding.updated_by else None,
            "updated_at": finding.updated_at.isoformat()}


def findings_of(series: Series) -> dict[str, dict | None]:
    """``{"R": finding_json | None, "L": ...}`` of one series."""
    found = {f.side: f for f in series.findings.select_related("updated_by")}
    return {side: finding_json(found.get(side)) for side in CropBox.Side.values}


def _describe(before: dict | None, after: dict) -> str:
    parts = [f"restore → v{after['restored_from']}"] if after["restored_from"] else []
    if before is None:
        before = {"gland": Gland.SEEN, "lesion_centre_lps": None, "lesion_diameter_mm": None, "comment": ""}
    if before["gland"] != after["gland"]:
        parts.append(Gland(after["gland"]).label)
    if (before["lesion_centre_lps"], before["lesion_diameter_mm"]) != (after["lesion_centre_lps"],
                                                                       after["lesion_diameter_mm"]):
        parts.append(f"lesion {after['lesion_diameter_mm']:.1f} mm" if after["lesion_diameter_mm"] else "lesion removed")
    if before["comment"] != after["comment"]:
        parts.append("comment")
    return "; ".join(parts) or "no change"


def finding_history(finding: SideFinding) -> list[dict]:
    """Every version of a side's findings, newest first, with who, when and ``change`` in words."""
    out, before = [], None
    for v in finding.versions.select_related("updated_by").order_by("version"):
        item = {"version": v.version, "gland": v.gland, "lesion_centre_lps": v.lesion_centre_lps,
                "lesion_diameter_mm": v.lesion_diameter_mm, "comment": v.comment, "restored_from": v.restored_from,
                "updated_by": v.updated_by.username if v.updated_by else None, "updated_at": v.updated_at.isoformat()}
        item["change"] = _describe(before, item)
        out.append(item)
        before = item
    return out[::-1]


def lesion_markers(series: Series) -> dict[str, LesionMarker | None]:
    """The current lesion marker of each side of ``series``: ``{"R": LesionMarker | None, "L": ...}``.

    Centres are patient LPS mm (``inference.ml.geometry`` converts them to voxels with the volume's affine),
    diameters mm. A side without findings, or whose findings mark no lesion, maps to None."""
    markers = dict.fromkeys(CropBox.Side.values)
    for f in series.findings.select_related("updated_by"):
        markers[f.side] = _marker(f)
    return markers


def dataset_lesion_markers(series: Iterable[Series] | None = None, *, dataset=None) -> dict[int, dict[str, LesionMarker]]:
    """Lesion markers of many scans at once: ``{series_id: {side: LesionMarker}}`` (sides without a marker and
    scans without any are left out). Give the series, or a ``dataset`` for all of its scans."""
    qs = SideFinding.objects.filter(lesion_diameter_mm__isnull=False).select_related("updated_by")
    if dataset is not None:
        qs = qs.filter(series__study__patient__dataset=dataset, series__is_scan=True)
    if series is not None:
        qs = qs.filter(series__in=[s.pk if isinstance(s, Series) else s for s in series])
    out: dict[int, dict[str, LesionMarker]] = {}
    for f in qs.order_by("series_id", "side"):
        out.setdefault(f.series_id, {})[f.side] = _marker(f)
    return out


def _marker(f: SideFinding) -> LesionMarker | None:
    if f.lesion_centre_lps is None or f.lesion_diameter_mm is None:
        return None
    return LesionMarker(side=f.side, centre_lps=tuple(float(v) for v in f.lesion_centre_lps),
                        diameter_mm=float(f.lesion_diameter_mm), version=f.version,
                        updated_by=f.updated_by.username if f.updated_by else None)
