"""API of the worklist and the browser CT viewer: worklist rows, compact volume data, boxes with versions.

Boxes are written only through ``annotations.boxes.save_box``; a stale ``version`` answers 409 with the
current box so the page can offer to reload.
"""
from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db.models import OuterRef, Prefetch, Subquery
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from adrenal_site.roles import IsClinician

from .boxes import VersionConflict, save_box
from .models import CropBox, CropBoxVersion, Dataset, Series

SIDES = ("R", "L")

_XYZ = serializers.ListField(child=serializers.FloatField(), min_length=3, max_length=3)
BOX_OUT = inline_serializer("ViewerBox", {
    "side": serializers.CharField(), "lps_min": _XYZ, "lps_max": _XYZ,
    "voxel_min": serializers.ListField(child=serializers.IntegerField()),
    "voxel_max": serializers.ListField(child=serializers.IntegerField()),
    "status": serializers.CharField(), "source": serializers.CharField(), "version": serializers.IntegerField(),
    "updated_by": serializers.CharField(allow_null=True), "updated_at": serializers.DateTimeField(),
})
BOX_IN = inline_serializer("ViewerBoxEdit", {
    "lps_min": _XYZ, "lps_max": _XYZ,
    "version": serializers.IntegerField(help_text="the version you edited; 0 for a new box"),
    "status": serializers.ChoiceField(choices=["proposed", "confirmed"], required=False),
})
VERSION_IN = inline_serializer("ViewerBoxVersion", {"version": serializers.IntegerField()})
CONFLICT = inline_serializer("ViewerBoxConflict", {"detail": serializers.CharField(), "current": BOX_OUT})


def visible_series(user):
    """Series of the datasets ``user`` may see."""
    return Series.objects.filter(study__patient__dataset__in=Dataset.objects.visible_to(user))


def series_for(user, pk: int) -> Series:
    return get_object_or_404(visible_series(user).select_related("volume", "study__patient__dataset"), pk=pk)


# ---------------------------------------------------------------- worklist

FILTERS = ("status", "verdict", "label", "q")


def worklist_rows(dataset: Dataset, filters: dict | None = None) -> dict:
    """Rows of a dataset's scans (label, box status, latest verdict), counts, and the first unconfirmed scan.

    ``filters``: ``status`` (box status), ``verdict`` (normal/abnormal/not_assessable/none), ``label``
    (normal/abnormal/none), ``q`` (text in patient id or series description). Counts are over all scans.
    """
    from inference.models import Prediction

    filters = {k: v for k, v in (filters or {}).items() if k in FILTERS and v}
    latest = Prediction.objects.filter(series=OuterRef("pk")).order_by("-created_at", "-pk")
    from .models import Label

    current = Label.objects.filter(is_current=True)  # Meta ordering: newest first, as Series.label reads it
    qs = (
        Series.objects.filter(study__patient__dataset=dataset, is_scan=True)
        .select_related("study__patient")
        .prefetch_related(Prefetch("labels", queryset=current, to_attr="current_labels"),
                          Prefetch("study__patient__labels", queryset=current.filter(series__isnull=True),
                                   to_attr="current_labels"))
        .annotate(verdict=Subquery(latest.values("verdict")[:1]), probability=Subquery(latest.values("probability")[:1]))
        .order_by("study__patient__pseudo_id", "study_id", "series_number", "id")
    )
    rows, counts = [], {"total": 0, **{s: 0 for s in Series.BoxStatus.values}}
    for s in qs:  # the label as Series.label gives it, from the prefetched current labels (no query per row)
        own = s.current_labels[0].value if s.current_labels else None
        patient_labels = s.study.patient.current_labels
        label = own or (patient_labels[0].value if patient_labels else None)
        row = {
            "id": s.pk, "patient": s.study.patient.pseudo_id, "series": s.series_description or s.series_uid,
            "series_uid": s.series_uid, "label": label, "box_status": s.box_status,
            "box_status_display": s.get_box_status_display(), "box_status_reason": s.box_status_reason,
            "verdict": s.verdict, "probability": s.probability, "url": f"/series/{s.pk}/",
        }
        counts["total"] += 1
        counts[s.box_status] += 1
        if _matches(row, filters):
            rows.append(row)
    next_id = next((r["id"] for r in rows if r["box_status"] in ("none", "proposed")), None)
    return {"dataset": {"id": dataset.pk, "name": dataset.name}, "counts": counts, "filters": filters,
            "rows": rows, "next_unconfirmed": next_id}


def _matches(row: dict, f: dict) -> bool:
    if "status" in f and row["box_status"] != f["status"]:
        return False
    if "verdict" in f and (row["verdict"] or "none") != f["verdict"]:
        return False
    if "label" in f and (row["label"] or "none") != f["label"]:
        return False
    if "q" in f and f["q"].lower() not in f"{row['patient']} {row['series']}".lower():
        return False
    return True


class Worklist(APIView):
    """``GET``: the dataset's scans with label, box status and latest verdict; counts; next unconfirmed."""

    permission_classes = [IsClinician]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        dataset = get_object_or_404(Dataset.objects.visible_to(request.user), pk=pk)
        return Response(worklist_rows(dataset, request.query_params.dict()))


class NextUnconfirmed(APIView):
    """``GET``: the next scan after this one (same dataset, worklist order, wrapping) still needing review."""

    permission_classes = [IsClinician]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        series = series_for(request.user, pk)
        rows = worklist_rows(series.dataset)["rows"]
        ids = [r["id"] for r in rows]
        start = ids.index(series.pk) + 1 if series.pk in ids else 0
        todo = [r for r in rows[start:] + rows[:start] if r["box_status"] in ("none", "proposed") and r["id"] != series.pk]
        nxt = todo[0] if todo else None
        return Response({"series_id": nxt and nxt["id"], "url": nxt and nxt["url"],
                         "remaining": len(todo)})


# ---------------------------------------------------------------- volume data

def volume_cache_path(volume) -> Path:
    """Where the gzip-compressed raw little-endian int16 ``[k, j, i]`` copy of a volume is cached."""
    src = Path(volume.file.path)
    stamp = f"{src.stat().st_size}-{int(src.stat().st_mtime)}"
    return Path(settings.MEDIA_ROOT) / "viewer" / f"volume-{volume.pk}-{stamp}.i16.gz"


def ensure_volume_cache(volume) -> Path:
    """Write the cache once (atomically); later calls return the existing file."""
    path = volume_cache_path(volume)
    if path.exists():
        return path
    from inference.ml.volume import load_nifti

    vol = load_nifti(volume.file.path)
    data = np.ascontiguousarray(vol.array, dtype="<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(f"volume-{volume.pk}-*.i16.gz"):  # copies of an older file of this volume
        if old != path:
            old.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
            gz.write(memoryview(data).cast("B"))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def volume_header(series: Series) -> dict:
    v = series.volume
    return {
        "series_id": series.pk, "shape": v.shape, "spacing_mm": v.spacing_mm, "affine": v.affine,
        "dtype": "int16", "byte_order": "little", "order": "[k, j, i] C-order",
        "data_url": f"/api/series/{series.pk}/volume/data/",
    }


class VolumeHeader(APIView):
    """``GET``: shape ``[k, j, i]``, spacing, affine (voxel -> LPS mm) and where to fetch the voxels."""

    permission_classes = [IsClinician]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        series = series_for(request.user, pk)
        if not hasattr(series, "volume"):
            return Response({"detail": "This series has no volume yet."}, status=404)
        return Response(volume_header(series))


class VolumeData(APIView):
    """``GET``: the raw int16 voxels, served gzip-encoded from an on-disk cache (the browser inflates them)."""

    permission_classes = [IsClinician]

    @extend_schema(responses={(200, 'application/octet-stream'): OpenApiTypes.BINARY})
    def get(self, request, pk: int):
        series = series_for(request.user, pk)
        if not hasattr(series, "volume"):
            return Response({"detail": "This series has no volume yet."}, status=404)
        path = ensure_volume_cache(series.volume)
        response = FileResponse(open(path, "rb"), content_type="application/octet-stream")
        response["Content-Encoding"] = "gzip"
        response["Cache-Control"] = "private, max-age=86400"
        response["X-Volume-Shape"] = ",".join(str(s) for s in series.volume.shape)
        return response


# ---------------------------------------------------------------- boxes

def box_json(box: CropBox | None) -> dict | None:
    if box is None:
        return None
    return {
        "side": box.side, "lps_min": box.lps_min, "lps_max": box.lps_max, "voxel_min": box.voxel_min,
        "voxel_max": box.voxel_max, "status": box.status, "source": box.source, "version": box.version,
        "updated_by": box.updated_by.username if box.updated_by else None, "updated_at": box.updated_at.isoformat(),
    }


def boxes_json(series: Series) -> dict:
    boxes = {b.side: b for b in series.boxes.select_related("updated_by")}
    series.refresh_from_db(fields=["box_status", "box_status_reason"])
    return {"series_id": series.pk, "box_status": series.box_status, "box_status_reason": series.box_status_reason,
            "boxes": {s: box_json(boxes.get(s)) for s in SIDES}}


def _side(side: str) -> str:
    if side not in SIDES:
        from rest_framework.exceptions import NotFound

        raise NotFound("side must be R or L")
    return side


def _conflict(exc: VersionConflict) -> Response:
    box = exc.box
    return Response(
        {"detail": f"This box was changed by someone else (now version {box.version if box else 0}).",
         "current": box_json(box)},
        status=status.HTTP_409_CONFLICT,
    )


def _version(data) -> int:
    try:
        return int(data["version"])
    except (KeyError, TypeError, ValueError):
        from rest_framework.exceptions import ValidationError

        raise ValidationError({"version": "the version you edited is required (0 for a new box)"})


def _coords(data, key: str) -> list[float]:
    from rest_framework.exceptions import ValidationError

    value = data.get(key)
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValidationError({key: "expected [x, y, z] in mm"})
    if len(out) != 3 or not all(np.isfinite(out)):
        raise ValidationError({key: "expected three finite numbers [x, y, z] in mm"})
    return out


class Boxes(APIView):
    """``GET``: both boxes of a series (null where none), with versions and the series' box status."""

    permission_classes = [IsClinician]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        return Response(boxes_json(series_for(request.user, pk)))


class BoxSide(APIView):
    """``GET`` one side's box; ``PUT {lps_min, lps_max, version, status?}`` saves it (409 on a stale version)."""

    permission_classes = [IsClinician]

    @extend_schema(responses={200: BOX_OUT})
    def get(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        return Response(box_json(series.boxes.filter(side=_side(side)).first()))

    @extend_schema(request=BOX_IN, responses={200: BOX_OUT, 409: CONFLICT})
    def put(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        side = _side(side)
        version = _version(request.data)
        lo, hi = _coords(request.data, "lps_min"), _coords(request.data, "lps_max")
        box_status = request.data.get("status", CropBox.Status.PROPOSED)
        if box_status not in CropBox.Status.values:
            return Response({"status": f"must be one of {CropBox.Status.values}"}, status=400)
        if not hasattr(series, "volume"):
            return Response({"detail": "This series has no volume yet."}, status=400)
        try:
            box = save_box(series, side, lo, hi, status=box_status, source="ui", user=request.user,
                           expected_version=version)
        except VersionConflict as exc:
            return _conflict(exc)
        return Response(box_json(box))


class BoxConfirm(APIView):
    """``POST {version}``: confirm the box as it is (a new version with status confirmed)."""

    permission_classes = [IsClinician]

    @extend_schema(request=VERSION_IN, responses={200: BOX_OUT, 409: CONFLICT})
    def post(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        box = get_object_or_404(CropBox, series=series, side=_side(side))
        try:
            box = save_box(series, side, box.lps_min, box.lps_max, status=CropBox.Status.CONFIRMED,
                           source=box.source, user=request.user, expected_version=_version(request.data))
        except VersionConflict as exc:
            return _conflict(exc)
        return Response(box_json(box))


class BoxUndo(APIView):
    """``POST {version}``: restore the state before the current version, saved as a new version."""

    permission_classes = [IsClinician]

    @extend_schema(request=VERSION_IN, responses={200: BOX_OUT, 400: OpenApiTypes.OBJECT, 409: CONFLICT})
    def post(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        box = get_object_or_404(CropBox, series=series, side=_side(side))
        version = _version(request.data)
        if version != box.version:
            return _conflict(VersionConflict(box))
        previous = CropBoxVersion.objects.filter(box=box, version__lt=box.version).order_by("-version").first()
        if previous is None:
            return Response({"detail": "Nothing to undo: this is the box's first version."}, status=400)
        try:
            box = save_box(series, side, previous.lps_min, previous.lps_max, status=previous.status,
                           source=previous.source, user=request.user, expected_version=version)
        except VersionConflict as exc:
            return _conflict(exc)
        return Response(box_json(box))


class BoxHistory(APIView):
    """``GET``: every saved version of one side's box, newest first."""

    permission_classes = [IsClinician]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        box = get_object_or_404(CropBox, series=series, side=_side(side))
        return Response([
            {"version": v.version, "lps_min": v.lps_min, "lps_max": v.lps_max, "status": v.status,
             "source": v.source, "updated_by": v.updated_by.username if v.updated_by else None,
             "updated_at": v.updated_at.isoformat()}
            for v in box.versions.select_related("updated_by").order_by("-version")
        ])
