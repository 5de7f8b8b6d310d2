from pathlib import PurePosixPath

from rest_framework import serializers

from adrenal_site.roles import ADMIN, has_role

from ..models import Dataset, ImportItem, ImportReport, Label, Patient, Series, Volume
from ..services.stats import dataset_counts


class DatasetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "series_rule", "created_at"]


class DatasetDetailSerializer(DatasetSerializer):
    counts = serializers.SerializerMethodField()

    class Meta(DatasetSerializer.Meta):
        fields = [*DatasetSerializer.Meta.fields, "counts"]

    def get_counts(self, obj) -> dict:
        return dataset_counts(obj)


class PatientSerializer(serializers.ModelSerializer):
    label = serializers.CharField(read_only=True, allow_null=True)
    studies = serializers.IntegerField(source="studies.count", read_only=True)

    class Meta:
        model = Patient
        fields = ["id", "pseudo_id", "label", "studies"]


class VolumeSerializer(serializers.ModelSerializer):
    file = serializers.CharField(source="file.name", read_only=True,
                                 help_text="the stored NIfTI, relative to MEDIA_ROOT (not served; the viewer reads "
                                           "/api/series/<id>/volume/data/)")

    class Meta:
        model = Volume
        fields = ["file", "shape", "spacing_mm", "affine", "resampled", "notes"]


def without_folders(extra: dict) -> dict:
    """``Series.extra`` with each excluded instance's ``path`` (in the import: ``abnormal/<patient folder>/...``)
    cut to the file's name: the folder of the ``{normal,abnormal}/<patient>/`` layout is often the patient's name
    or id (the raw id the pseudonym is made from when PatientID is blank), which only admins, who imported it, read."""
    if not isinstance(extra, dict) or not isinstance(extra.get("excluded_instances"), list):
        return extra
    excluded = [{**e, "path": PurePosixPath(str(e.get("path", ""))).name} if isinstance(e, dict) else e
                for e in extra["excluded_instances"]]
    return {**extra, "excluded_instances": excluded}


class SeriesSerializer(serializers.ModelSerializer):
    patient = serializers.CharField(source="study.patient.pseudo_id", read_only=True)
    patient_id = serializers.IntegerField(source="study.patient_id", read_only=True)
    study_uid = serializers.CharField(source="study.study_uid", read_only=True)
    label = serializers.CharField(read_only=True, allow_null=True)
    volume = VolumeSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Series
        fields = ["id", "series_uid", "uid_source", "study_uid", "patient", "patient_id", "label", "is_scan",
                  "modality", "image_type", "body_part", "series_description", "series_number", "slice_thickness_mm",
                  "slice_spacing_mm", "pixel_spacing_mm", "orientation", "convolution_kernel", "kvp", "exposure_mas",
                  "contrast_agent", "contrast_timing", "manufacturer", "model_name", "series_date", "series_time",
                  "instance_count", "transfer_syntax", "extra", "volume"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        if not has_role(getattr(request, "user", None), ADMIN):
            data["extra"] = without_folders(data["extra"])
        return data


class LabelSerializer(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField(allow_null=True)  # null: an imported label, a deleted user
    value = serializers.ChoiceField(choices=Label.Value.choices)
    series = serializers.PrimaryKeyRelatedField(queryset=Series.objects.all(), required=False, allow_null=True)
    side = serializers.ChoiceField(choices=list(Label.SIDES), required=False, default="",
                                   help_text="which adrenal is abnormal: R, L, RL, none; '' = not known")

    class Meta:
        model = Label
        fields = ["id", "series", "value", "side", "source", "note", "is_current", "created_by", "created_at"]
        read_only_fields = ["source", "is_current", "created_by", "created_at"]

    def validate(self, attrs):
        try:
            Label.check_side(attrs.get("value"), attrs.get("side", ""))
        except ValueError as exc:
            raise serializers.ValidationError({"side": str(exc)}) from exc
        return attrs


class ImportItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImportItem
        fields = ["id", "path", "status", "reason", "series"]


class ImportReportSerializer(serializers.ModelSerializer):
    counts = serializers.SerializerMethodField()
    job_status = serializers.CharField(source="job.status", read_only=True, allow_null=True, default=None)

    class Meta:
        model = ImportReport
        fields = ["id", "dataset", "job", "job_status", "source", "created_at", "counts"]

    def get_counts(self, obj) -> dict:
        return obj.counts()


class ImportReportDetailSerializer(ImportReportSerializer):
    items = ImportItemSerializer(many=True, read_only=True)

    class Meta(ImportReportSerializer.Meta):
        fields = [*ImportReportSerializer.Meta.fields, "items"]


class StartImportSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="A folder or file on the server (workers must see it)")
    labels_csv = serializers.CharField(required=False, allow_blank=True)
