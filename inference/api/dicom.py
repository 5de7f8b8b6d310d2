"""A prediction's DICOM results (the node's SR and key images) for download, and their deliveries.

- ``GET /api/predictions/<id>/dicom/``: ``{"prediction", "results": [{"kind", "sop_instance_uid", "series_uid",
  "description", "url"}], "zip", "sends": [...every delivery with its attempts...]}``; the results are made on
  first request when the scan came from the PACS (404 with the reason when it did not);
- ``GET /api/predictions/<id>/dicom/<sop_instance_uid>.dcm``: one object (``application/dicom``);
- ``GET /api/predictions/<id>/dicom.zip``: all of them.

They carry the patient's identity from the PACS (that is how they file into the patient's study), so they are
served to the same users who see the prediction. Pages link to these URLs (session authentication works).
"""
from __future__ import annotations

import io
import zipfile

from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from rest_framework.exceptions import APIException, NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from adrenal_site.roles import IsClinician

from ..models import DicomResult, Prediction
from ..services.dicom_node import answers, sending


def _prediction(request, pk: int) -> Prediction:
    qs = Prediction.objects.visible_to(request.user).select_related("series__study", "run")
    return get_object_or_404(qs, pk=pk)


class ResultsUnavailable(APIException):
    """The source header kept for the scan gives no SR or key image (422, the cause named)."""

    status_code = 422
    default_code = "dicom_results_unavailable"


def _results(prediction: Prediction) -> list[DicomResult]:
    try:
        return answers.make_results(prediction)
    except answers.NoSource as exc:
        raise NotFound(str(exc)) from exc
    except answers.CannotBuild as exc:
        raise ResultsUnavailable(str(exc)) from exc


class PredictionDicom(APIView):
    permission_classes = [IsClinician]

    def get(self, request, pk: int):
        prediction = _prediction(request, pk)
        results = _results(prediction)
        return Response({
            "prediction": prediction.pk,
            "results": [{"kind": r.kind, "sop_instance_uid": r.sop_instance_uid, "series_uid": r.series_uid,
                         "study_uid": r.study_uid, "description": r.description,
                         "url": request.build_absolute_uri(reverse("api-prediction-dicom-file",
                                                                   args=[prediction.pk, r.sop_instance_uid]))}
                        for r in results],
            "zip": request.build_absolute_uri(reverse("api-prediction-dicom-zip", args=[prediction.pk])),
            "sends": sending.sends_log(prediction),
        })


class PredictionDicomFile(APIView):
    permission_classes = [IsClinician]

    def get(self, request, pk: int, sop_uid: str):
        prediction = _prediction(request, pk)
        result = next((r for r in _results(prediction) if r.sop_instance_uid == sop_uid), None)
        if result is None:
            raise NotFound(f"prediction {pk} has no DICOM result {sop_uid}")
        name = f"{result.kind}_{sop_uid}.dcm"
        return FileResponse(open(answers.result_path(result), "rb"), content_type="application/dicom",
                            as_attachment=True, filename=name)


class PredictionDicomZip(APIView):
    permission_classes = [IsClinician]

    def get(self, request, pk: int):
        prediction = _prediction(request, pk)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for r in _results(prediction):
                zf.write(answers.result_path(r), f"{r.kind}_{r.sop_instance_uid}.dcm")
        response = HttpResponse(buffer.getvalue(), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="prediction_{pk}_dicom.zip"'
        return response
