"""API of the per-side findings (gland seen / not visualised / absent, lesion marker, comment), versioned like
the boxes: ``GET /api/series/<id>/findings/``, ``GET|PUT .../findings/<R|L>/`` (409 on a stale version, 400
naming the field), ``GET .../findings/<side>/history/``, ``POST .../findings/<side>/restore/`` and, for leads
reading a whole dataset, ``GET /api/datasets/<id>/findings/``."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from adrenal_site.api_params import page_of
from adrenal_site.api_schema import JSON_LIST, query_parameters
from adrenal_site.parsers import JSON_ONLY
from adrenal_site.roles import IsClinician

from ..models import Dataset, Gland, SideFinding
from ..services.boxes import VersionConflict
from ..services.findings import (
    MAX_COMMENT_CHARS,
    FindingInvalid,
    finding_history,
    finding_json,
    findings_of,
    restore_finding,
    save_finding,
)
from .strict import StrictCharField, StrictFloatField, StrictIntegerField, lps_point
from .viewer import RestoreIn, conflict_response, record_response, series_for, valid

SIDES = ("R", "L")


class FindingEdit(serializers.Serializer):
    """Fields left out keep their value; ``lesion_centre_lps`` and ``lesion_diameter_mm`` null clear the marker."""

    version = StrictIntegerField(help_text="the version you edited; 0 when the side has no findings yet")
    gland = serializers.ChoiceField(choices=Gland.choices, required=False)
    lesion_centre_lps = lps_point(required=False, allow_null=True)
    lesion_diameter_mm = StrictFloatField(required=False, allow_null=True, help_text="mm, longest axial diameter")
    comment = StrictCharField(required=False, allow_blank=True, max_length=MAX_COMMENT_CHARS,
                                    trim_whitespace=False)


def _side(side: str) -> str:
    if side not in SIDES:
        raise NotFound("side must be R or L")
    return side


class Findings(APIView):
    """``GET``: both sides' findings of a series (null where nothing was recorded)."""

    permission_classes = [IsClinician]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        series = series_for(request.user, pk)
        return Response({"series_id": series.pk, "findings": findings_of(series)})


class FindingSide(APIView):
    """``GET`` one side's findings; ``PUT {version, gland?, lesion_centre_lps?, lesion_diameter_mm?, comment?}``
    saves them as a new version (409 with the current findings on a stale version)."""

    permission_classes = [IsClinician]
    parser_classes = JSON_ONLY

    @extend_schema(responses=OpenApiTypes.OBJECT, operation_id="series_finding_side_retrieve")
    def get(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        return record_response(finding_json(series.findings.filter(side=_side(side)).first()))

    @extend_schema(request=FindingEdit, responses={200: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT})
    def put(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        side = _side(side)
        data = dict(valid(FindingEdit, request))
        version = data.pop("version")
        try:
            finding = save_finding(series, side, user=request.user, expected_version=version, **data)
        except FindingInvalid as exc:
            raise ValidationError({exc.field: [exc.message]})
        except VersionConflict as exc:
            return conflict_response(exc, finding_json, request.user)
        return record_response(finding_json(finding))


class FindingHistory(APIView):
    """``GET``: every version of one side's findings, newest first, with who, when and what changed."""

    permission_classes = [IsClinician]

    @extend_schema(responses={200: JSON_LIST})
    def get(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        finding = get_object_or_404(SideFinding, series=series, side=_side(side))
        return Response(finding_history(finding))


class FindingRestore(APIView):
    """``POST {version, restore}``: bring back the findings as they were at version ``restore``."""

    permission_classes = [IsClinician]
    parser_classes = JSON_ONLY

    @extend_schema(request=RestoreIn, responses={200: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT})
    def post(self, request, pk: int, side: str):
        series = series_for(request.user, pk)
        get_object_or_404(SideFinding, series=series, side=_side(side))
        data = valid(RestoreIn, request)
        try:
            finding = restore_finding(series, side, data["restore"], user=request.user,
                                      expected_version=data["version"])
        except LookupError as exc:
            raise ValidationError({"restore": [str(exc)]})
        except FindingInvalid as exc:
            raise ValidationError({exc.field: [exc.message]})
        except VersionConflict as exc:
            return conflict_response(exc, finding_json, request.user)
        return record_response(finding_json(finding))


class DatasetFindings(APIView):
    """``GET``: the recorded side findings of a dataset's scans, with patient and series (for leads' review), a
    page at a time (``?limit=``, ``?offset=``; ``count``, ``next``, ``previous`` beside them)."""

    permission_classes = [IsClinician]

    @extend_schema(responses=OpenApiTypes.OBJECT, parameters=query_parameters(page=True))
    def get(self, request, pk: int):
        dataset = get_object_or_404(Dataset.objects.visible_to(request.user), pk=pk)
        rows, paging = page_of(request, SideFinding.objects.filter(series__study__patient__dataset=dataset)
                               .select_related("updated_by", "series__study__patient").order_by("series_id", "side"))
        return Response({"dataset": {"id": dataset.pk, "name": dataset.name}, **paging, "findings": [
            {"series_id": f.series_id, "series_uid": f.series.series_uid, "patient": f.series.study.patient.pseudo_id,
             **finding_json(f)} for f in rows]})
