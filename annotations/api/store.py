"""API views of the study store and annotation."""
from pathlib import Path

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response

from adrenal_site.api_params import choice_param
from adrenal_site.api_schema import JSON, query_parameters
from adrenal_site.roles import ADMIN, CLINICIAN, IsAdmin, IsClinician, _RolePermission, has_role

from ..models import Dataset, ImportReport, Label, Patient, Series
from ..services.import_roots import OutsideImportRoots, allowed_import_path
from ..services.importer import LabelsCsvInvalid, read_labels_csv
from ..tasks import start_import
from .serializers import (
    DatasetDetailSerializer,
    DatasetSerializer,
    ImportReportDetailSerializer,
    ImportReportSerializer,
    LabelSerializer,
    PatientSerializer,
    SeriesSerializer,
    StartImportSerializer,
)


class ReadClinicianWriteAdmin(_RolePermission):
    """Clinicians read (their datasets); changing needs the admin role."""

    role = CLINICIAN

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, CLINICIAN if request.method in SAFE_METHODS else ADMIN)


class DatasetList(generics.ListAPIView):
    serializer_class = DatasetSerializer
    permission_classes = [IsClinician]

    def get_queryset(self):
        return Dataset.objects.visible_to(self.request.user)


class DatasetDetail(generics.RetrieveAPIView):
    """A dataset with its counts (patients, studies, scans, normal, abnormal)."""

    serializer_class = DatasetDetailSerializer
    permission_classes = [IsClinician]

    def get_queryset(self):
        return Dataset.objects.visible_to(self.request.user)


class _InDataset:
    def dataset(self) -> Dataset:
        return get_object_or_404(Dataset.objects.visible_to(self.request.user), pk=self.kwargs["pk"])


class DatasetPatients(_InDataset, generics.ListAPIView):
    serializer_class = PatientSerializer
    permission_classes = [IsClinician]

    def get_queryset(self):
        return Patient.objects.filter(dataset=self.dataset()).prefetch_related("labels")


SCANS_CHOICES = ("1", "true", "0", "false")  # ?scans=: 1/true only scans with a volume; 0/false every series


@extend_schema_view(get=extend_schema(parameters=query_parameters({"scans": SCANS_CHOICES})))
class DatasetSeries(_InDataset, generics.ListAPIView):
    """Series of a dataset with their volume (file, shape [k,j,i], spacing [i,j,k], affine voxel->LPS).
    ``?scans=1`` (or ``true``) lists only scans; ``0``/``false`` (the default) every series; another value is
    a 400 naming ``scans``."""

    serializer_class = SeriesSerializer
    permission_classes = [IsClinician]

    def get_queryset(self):
        qs = Series.objects.filter(study__patient__dataset=self.dataset()).select_related("study__patient", "volume")
        if choice_param(self.request, "scans", SCANS_CHOICES) in ("1", "true"):
            qs = qs.filter(is_scan=True, volume__isnull=False)
        return qs.order_by("study__patient__pseudo_id", "id")


@extend_schema_view(post=extend_schema(request=StartImportSerializer,
                                        responses={202: ImportReportSerializer, 400: JSON}))
class DatasetImports(_InDataset, generics.ListCreateAPIView):
    """Import reports of a dataset; POST ``{"path", "labels_csv"}`` starts an import of a server folder
    inside ``ADRENAL_IMPORT_ROOTS`` (400 naming the roots otherwise)."""

    permission_classes = [IsAdmin]

    def get_serializer_class(self):
        return StartImportSerializer if self.request.method == "POST" else ImportReportSerializer

    def get_queryset(self):
        return ImportReport.objects.filter(dataset=self.dataset()).select_related("job")

    def create(self, request, *args, **kwargs):
        dataset = self.dataset()
        data = StartImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        labels = data.validated_data.get("labels_csv") or None
        try:  # only folders inside ADRENAL_IMPORT_ROOTS
            path = allowed_import_path(data.validated_data["path"])
        except (OutsideImportRoots, FileNotFoundError) as exc:
            return Response({"path": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        if labels:
            try:
                labels = str(allowed_import_path(labels, "labels_csv"))
            except (OutsideImportRoots, FileNotFoundError) as exc:
                return Response({"labels_csv": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
            if not Path(labels).is_file():
                return Response({"labels_csv": [f"{labels} is not a file"]}, status=status.HTTP_400_BAD_REQUEST)
            try:
                read_labels_csv(labels)
            except LabelsCsvInvalid as exc:
                return Response({"labels_csv": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        with transaction.atomic():
            job = start_import(dataset, str(path), labels_csv=labels, user=request.user)
            # the folder as the job refers to it: a storage name when it lies in the store
            report = ImportReport.objects.create(dataset=dataset, job=job, source=job.params["path"][:1000])
        return Response(ImportReportSerializer(report).data, status=status.HTTP_202_ACCEPTED)


class ImportReportDetail(generics.RetrieveAPIView):
    serializer_class = ImportReportDetailSerializer
    permission_classes = [IsAdmin]
    queryset = ImportReport.objects.select_related("job").prefetch_related("items")


@extend_schema_view(post=extend_schema(responses={201: LabelSerializer, 200: LabelSerializer, 400: JSON},
                                        description="201 with the new current label; 200 with the current label "
                                                    "when it already says this (nothing is added)"))
class PatientLabels(generics.ListCreateAPIView):
    """A patient's labels, newest first (history included); admins POST ``{"value", "side"?, "series"?, "note"?}``
    (``side``: which adrenal is abnormal, R, L, RL or none; '' = not known)."""

    serializer_class = LabelSerializer
    permission_classes = [ReadClinicianWriteAdmin]

    def patient(self) -> Patient:
        visible = Dataset.objects.visible_to(self.request.user)
        return get_object_or_404(Patient.objects.filter(dataset__in=visible), pk=self.kwargs["pk"])

    def get_queryset(self):
        return Label.objects.filter(patient=self.patient()).select_related("created_by")

    def create(self, request, *args, **kwargs):
        patient = self.patient()
        data = LabelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        series = data.validated_data.get("series")
        if series is not None and series.study.patient_id != patient.pk:
            return Response({"series": ["not a series of this patient"]}, status=status.HTTP_400_BAD_REQUEST)
        before = Label.objects.filter(patient=patient).count()
        label = Label.assign(patient, data.validated_data["value"], Label.Source.UI, series=series, user=request.user,
                             note=data.validated_data.get("note", ""), side=data.validated_data.get("side", ""))
        changed = Label.objects.filter(patient=patient).count() > before
        return Response(LabelSerializer(label).data, status=status.HTTP_201_CREATED if changed else status.HTTP_200_OK)
