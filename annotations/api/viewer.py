"""API of the worklist and the browser CT viewer: worklist rows, compact volume data, boxes with versions.

Boxes are written only through ``annotations.services.boxes.save_box``; a stale ``version`` answers 409 with the
current box so the page can offer to reload.
"""
from __future__ import annotations

import numpy as np
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from adrenal_site.roles import IsClinician

from ..models import CropBox, CropBoxVersion, Dataset, Series
from ..services.boxes import VersionConflict, save_box
from ..services.volume_cache import ensure_volume_cache
from ..services.worklist import next_unconfirmed, worklist_rows

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
        nxt, remaining = next_unconfirmed(series_for(request.user, pk))
        return Response({"series_id": nxt and nxt["id"], "url": nxt and nxt["url"], "remaining": remaining})


# ---------------------------------------------------------------- volume data

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
        raise ValidationError({"version": "the version you edited is required (0 for a new box)"})


def _coords(data, key: str) -> list[float]:
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
