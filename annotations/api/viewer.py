"""API of the worklist and the browser CT viewer: worklist rows, the volume in slabs, boxes with versions.

Boxes are written only through ``annotations.services.boxes`` (``save_box`` and its undo/redo/restore); a stale
``version`` answers 409 with the current box so the page can offer to reload; input that is not a box of this
volume answers 400 naming the field (numbers only, min <= max, meeting the volume, sides <= the maximum).
"""
from __future__ import annotations

from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from adrenal_site.api_params import choice_param, page_of
from adrenal_site.api_schema import JSON_LIST, query_parameters
from adrenal_site.parsers import JSON_ONLY
from adrenal_site.roles import IsClinician

from ..models import CropBox, Dataset, Series
from ..services.boxes import (
    BoxInvalid,
    VersionConflict,
    box_history,
    max_side_mm,
    redo_box,
    restore_box,
    save_box,
    steps,
    undo_box,
)
from ..services.volume_cache import ensure_slab, ensure_volume_cache, slab_plan
from ..services.worklist import FILTER_CHOICES, next_unconfirmed, series_info, worklist_rows
from .strict import StrictIntegerField, lps_point

SIDES = ("R", "L")



def _xyz() -> serializers.ListField:
    """An LPS point in mm; a new field per name (one instance under two names documents only the last)."""
    return serializers.ListField(child=serializers.FloatField(), min_length=3, max_length=3)


BOX_OUT = inline_serializer("ViewerBox", {
    "side": serializers.CharField(), "lps_min": _xyz(), "lps_max": _xyz(),
    "voxel_min": serializers.ListField(child=serializers.IntegerField()),
    "voxel_max": serializers.ListField(child=serializers.IntegerField()),
    "status": serializers.CharField(),
    "source": serializers.CharField(help_text="how the box was made: ui, csv, or the proposer's method (atlas, "
                                             "atlas-level, landmarks, mask)"),
    "method": serializers.CharField(help_text="the same as source"),
    "confidence": serializers.FloatField(allow_null=True, help_text="proposals: 0-1, for ranking review (not a "
                                                                    "probability); null for boxes a person drew"),
    "note": serializers.CharField(help_text="proposals: what qualifies the box (lesion placement, clipped)"),
    "provenance": serializers.CharField(help_text='in words: "proposed by atlas registration, confidence 0.82"'),
    "version": serializers.IntegerField(),
    "updated_by": serializers.CharField(allow_null=True), "updated_at": serializers.DateTimeField(),
    "undo_to": serializers.IntegerField(allow_null=True, help_text="the version undo would restore"),
    "redo_to": serializers.IntegerField(allow_null=True, help_text="the version redo would restore"),
})


class BoxEdit(serializers.Serializer):
    """A box edit: numbers only (no strings, booleans or fractions for the version)."""

    lps_min = lps_point()
    lps_max = lps_point()
    version = StrictIntegerField(help_text="the version you edited; 0 for a new box")
    status = serializers.ChoiceField(choices=CropBox.Status.values, required=False, default=CropBox.Status.PROPOSED)


class VersionIn(serializers.Serializer):
    version = StrictIntegerField(help_text="the version you are looking at (the current one)")


class RestoreIn(VersionIn):
    restore = StrictIntegerField(min_value=1, help_text="the version to bring back")


CONFLICT = inline_serializer("ViewerBoxConflict", {"detail": serializers.CharField(), "current": BOX_OUT})


def series_for(user, pk: int) -> Series:
    """The series ``pk`` if ``user`` may open it (``Series.objects.visible_to``: their datasets' scans and the
    ones they submitted), else 404."""
    return get_object_or_404(Series.objects.visible_to(user).select_related("volume", "study__patient__dataset"),
                             pk=pk)


# ---------------------------------------------------------------- worklist

class Worklist(APIView):
    """``GET``: the dataset's scans with label, box status and latest verdict; counts; next unconfirmed.
    Filters: ``?status=`` (box status: none, proposed, confirmed, not_covered), ``?verdict=`` (normal, abnormal,
    not_assessable, none), ``?label=`` (normal, abnormal, none), ``?q=`` (text in the patient id or series);
    another value of an enumerated filter is a 400 naming it and the values it takes. The rows come a page at a
    time (``?limit=``, ``?offset=``; ``count`` of the filtered rows, ``next``, ``previous``); ``counts`` and
    ``next_unconfirmed`` are over all of them."""

    permission_classes = [IsClinician]

    @extend_schema(responses=OpenApiTypes.OBJECT, parameters=query_parameters(
        FILTER_CHOICES, page=True, q="text in the pseudonym, series description or Series UID"))
    def get(self, request, pk: int):
        dataset = get_object_or_404(Dataset.objects.visible_to(request.user), pk=pk)
        for name, choices in FILTER_CHOICES.items():
            choice_param(request, name, choices)
        data = worklist_rows(dataset, request.query_params.dict())
        data["rows"], paging = page_of(request, data["rows"])
        return Response({**data, **paging})


class NextUnconfirmed(APIView):
    """``GET``: the next scan after this one (same dataset, worklist order, wrapping) still needing review, among
    the scans you may open (a scan you submitted to "Submitted studies" leads to no one else's)."""

    permission_classes = [IsClinician]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        nxt, remaining = next_unconfirmed(series_for(request.user, pk), request.user)
        return Response({"series_id": nxt and nxt["id"], "url": nxt and nxt["url"], "remaining": remaining})


# ---------------------------------------------------------------- volume data

def volume_header(series: Series) -> dict:
    """What the viewer needs to fetch and place the voxels: shape ``[k, j, i]``, spacing ``[i, j, k]`` mm, the
    affine (voxel ``(i, j, k)`` -> LPS mm), the slab plan and URLs, and the series' overlay text."""
    v = series.volume
    plan = slab_plan(v)
    return {
        "series_id": series.pk, "shape": v.shape, "spacing_mm": v.spacing_mm, "affine": v.affine,
        "dtype": "int16", "byte_order": "little", "order": "[k, j, i] C-order",
        "data_url": f"/api/series/{series.pk}/volume/data/",
        "slabs": {"slices": plan["slices"], "count": plan["count"],
                  "url": f"/api/series/{series.pk}/volume/slabs/{{n}}/?v={plan['stamp']}"},
        "series": series_info(series),
    }


def _no_volume() -> Response:
    return Response({"detail": "This series has no volume yet."}, status=404)


def _gzip_file(path, shape_header: str) -> FileResponse:
    response = FileResponse(open(path, "rb"), content_type="application/octet-stream")
    response["Content-Encoding"] = "gzip"
    response["Cache-Control"] = "private, max-age=86400"
    response["X-Volume-Shape"] = shape_header
    return response


class VolumeHeader(APIView):
    """``GET``: shape ``[k, j, i]``, spacing, affine (voxel -> LPS mm), the slab plan and the overlay text."""

    permission_classes = [IsClinician]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        series = series_for(request.user, pk)
        if not hasattr(series, "volume"):
            return _no_volume()
        return Response(volume_header(series))


class VolumeData(APIView):
    """``GET``: the whole volume as raw int16 ``[k, j, i]``, served gzip-encoded from an on-disk cache."""

    permission_classes = [IsClinician]

    @extend_schema(responses={(200, 'application/octet-stream'): OpenApiTypes.BINARY})
    def get(self, request, pk: int):
        series = series_for(request.user, pk)
        if not hasattr(series, "volume"):
            return _no_volume()
        return _gzip_file(ensure_volume_cache(series.volume), ",".join(str(s) for s in series.volume.shape))


class VolumeSlab(APIView):
    """``GET``: slab ``n`` (slices ``n * slices`` up to ``(n + 1) * slices``, see the header's ``slabs``) as raw
    int16 ``[slices, j, i]``, gzip-encoded, prepared at import (or now, the first time)."""

    permission_classes = [IsClinician]

    @extend_schema(responses={(200, 'application/octet-stream'): OpenApiTypes.BINARY})
    def get(self, request, pk: int, n: int):
        series = series_for(request.user, pk)
        if not hasattr(series, "volume"):
            return _no_volume()
        volume = series.volume
        try:
            path = ensure_slab(volume, n)
        except IndexError as exc:
            raise NotFound(str(exc))
        per = slab_plan(volume)["slices"]
        k0, k1 = n * per, min((n + 1) * per, volume.shape[0])
        response = _gzip_file(path, f"{k1 - k0},{volume.shape[1]},{volume.shape[2]}")
        response["X-Slab-Slices"] = f"{k0},{k1}"
        return response


# ---------------------------------------------------------------- boxes

def box_json(box: CropBox | None) -> dict | None:
    if box is None:
        return None
    where = steps(box)
    return {
        "side": box.side, "lps_min": box.lps_min, "lps_max": box.lps_max, "voxel_min": box.voxel_min,
        "voxel_max": box.voxel_max, "status": box.status, "source": box.source, "method": box.source,
        "confidence": box.confidence, "note": box.note, "provenance": box.provenance, "version": box.version,
        "updated_by": box.updated_by.username if box.updated_by else None, "updated_at": box.updated_at.isoformat(),
        "undo_to": where.undo, "redo_to": where.redo,
    }


def boxes_json(series: Series) -> dict:
    boxes = {b.side: b for b in series.boxes.select_related("updated_by")}
    series.refresh_from_db(fields=["box_status", "box_status_reason", "uncovered_sides"])
    return {"series_id": series.pk, "box_status": series.box_status, "box_status_reason": series.box_status_reason,
            "uncovered_sides": series.uncovered_sides or {},
            "max_side_mm": max_side_mm(), "boxes": {s: box_json(boxes.get(s)) for s in SIDES}}


def _side(side: str) -> str:
    if side not in SIDES:
        raise NotFound("side must be R or L")
    return side


def record_response(data: dict | None) -> Response | HttpResponse:
    """A box's or side's findings as JSON: ``null`` (not an empty body) where there is none, so every client can
    parse the answer."""
    if data is None:
        return HttpResponse(b"null", content_type="application/json")
    return Response(data)


def conflict_response(exc: VersionConflict, as_json, user=None) -> Response:
    """409 with the record as it is now (``as_json`` renders it) and who changed it, in words: ``user`` (the one
    asking) saving over their own newer version has it open in another tab or window, not 'someone else'."""
    record = exc.record
    version = record.version if record else 0
    by = getattr(record, "updated_by", None) if record else None
    if by is not None and user is not None and by.pk == user.pk:
        detail = f"You changed this in another tab or window (now version {version})."
    elif by is not None:
        detail = f"This was changed by {by.username} (now version {version})."
    else:
        detail = f"This was changed meanwhile (now version {version})."
    return Response({"detail": detail, "current": as_json(record)}, status=status.HTTP_409_CONFLICT)


def _conflict(exc: VersionConflict, user) -> Response:
    return conflict_response(exc, box_json, user)


def valid(serializer_class, request) -> dict:
    """The request body validated by ``serializer_class`` (400 naming the field otherwise)."""
    ser = serializer_class(data=request.data)
    ser.is_valid(raise_exception=True)
    return ser.validated_data


def _needs_volume(series: Series) -> None:
    if not hasattr(series, "volume"):
        raise ValidationError({"detail": "This series has no volume yet."})


class Boxes(APIView):
    """``GET``: both boxes of a series (null where none), with versions and the series' box status."""

    permission_classes = [IsClinician]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        return Response(boxes_json(series_for(request.user, pk)))


class BoxSide(APIView):
    """``GET`` one side's box; ``PUT {lps_min, lps_max, version, status?}`` saves it: 409 on a stale version; 400
    naming the field for anything but numbers, min > max, a box that misses the volume or a side over the
    maximum (``max_side_mm`` in the boxes' answer)."""

    permission_classes = [IsClinician]
    parser_classes = JSON_ONLY

    @extend_schema(responses={200: BOX_OUT}, operation_id="series_box_side_retrieve")
    def get(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        return record_response(box_json(series.boxes.filter(side=_side(side)).first()))

    @extend_schema(request=BoxEdit, responses={200: BOX_OUT, 400: OpenApiTypes.OBJECT, 409: CONFLICT})
    def put(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        side = _side(side)
        data = valid(BoxEdit, request)
        _needs_volume(series)
        try:
            box = save_box(series, side, data["lps_min"], data["lps_max"], status=data["status"], source="ui",
                           user=request.user, expected_version=data["version"])
        except BoxInvalid as exc:
            raise ValidationError({exc.field: [exc.message]})
        except VersionConflict as exc:
            return _conflict(exc, request.user)
        return record_response(box_json(box))


class BoxConfirm(APIView):
    """``POST {version}``: confirm the box as it is (a new version with status confirmed)."""

    permission_classes = [IsClinician]
    parser_classes = JSON_ONLY

    @extend_schema(request=VersionIn, responses={200: BOX_OUT, 409: CONFLICT})
    def post(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        box = get_object_or_404(CropBox, series=series, side=_side(side))
        version = valid(VersionIn, request)["version"]
        try:
            box = save_box(series, side, box.lps_min, box.lps_max, status=CropBox.Status.CONFIRMED,
                           source=box.source, user=request.user, expected_version=version,
                           confidence=box.confidence, note=box.note)
        except BoxInvalid as exc:
            raise ValidationError({exc.field: [exc.message]})
        except VersionConflict as exc:
            return _conflict(exc, request.user)
        return record_response(box_json(box))


class _BoxStep(APIView):
    permission_classes = [IsClinician]
    parser_classes = JSON_ONLY
    step = staticmethod(undo_box)

    @extend_schema(request=VersionIn, responses={200: BOX_OUT, 400: OpenApiTypes.OBJECT, 409: CONFLICT})
    def post(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        get_object_or_404(CropBox, series=series, side=_side(side))
        version = valid(VersionIn, request)["version"]
        try:
            box = self.step(series, side, user=request.user, expected_version=version)
        except LookupError as exc:
            return Response({"detail": str(exc)}, status=400)
        except VersionConflict as exc:
            return _conflict(exc, request.user)
        return record_response(box_json(box))


class BoxUndo(_BoxStep):
    """``POST {version}``: back to the state the current one was made from, saved as a new version (400 when
    there is nothing to undo). Repeated undos walk back through every earlier state."""

    step = staticmethod(undo_box)


class BoxRedo(_BoxStep):
    """``POST {version}``: forward to the newest edit made from the current state (after undos), saved as a new
    version (400 when there is nothing to redo)."""

    step = staticmethod(redo_box)


class BoxRestore(APIView):
    """``POST {version, restore}``: bring back the box as it was at version ``restore`` (a new version)."""

    permission_classes = [IsClinician]
    parser_classes = JSON_ONLY

    @extend_schema(request=RestoreIn, responses={200: BOX_OUT, 400: OpenApiTypes.OBJECT, 409: CONFLICT})
    def post(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        get_object_or_404(CropBox, series=series, side=_side(side))
        data = valid(RestoreIn, request)
        try:
            box = restore_box(series, side, data["restore"], user=request.user, expected_version=data["version"])
        except LookupError as exc:
            raise ValidationError({"restore": [str(exc)]})
        except VersionConflict as exc:
            return _conflict(exc, request.user)
        return record_response(box_json(box))


class BoxHistory(APIView):
    """``GET``: every saved version of one side's box, newest first, with who, when, how it was made (edit,
    confirm, undo, redo, restore) and what changed in words."""

    permission_classes = [IsClinician]

    @extend_schema(responses={200: JSON_LIST})
    def get(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        box = get_object_or_404(CropBox, series=series, side=_side(side))
        return Response(box_history(box))
