"""Django admin for the study store (datasets and members, patients, series, volumes, labels, imports)."""
from django.contrib import admin

from .models import CropBox, CropBoxVersion, Dataset, ImportItem, ImportReport, Label, Patient, Series, Study, Volume


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "series_rule", "created_at"]
    filter_horizontal = ["members"]
    search_fields = ["name"]


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ["pseudo_id", "dataset", "label"]
    list_filter = ["dataset"]
    search_fields = ["pseudo_id"]
    readonly_fields = ["source_key"]  # keyed hash of the source PatientID; the identifier itself is not stored


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["patient", "study_uid", "study_date", "description"]
    list_filter = ["patient__dataset"]


class VolumeInline(admin.StackedInline):
    model = Volume
    extra = 0
    readonly_fields = ["file", "shape", "spacing_mm", "affine", "resampled", "notes", "created_at"]


@admin.register(Series)
class SeriesAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "series_description", "is_scan", "modality", "slice_thickness_mm", "instance_count"]
    list_filter = ["is_scan", "modality", "study__patient__dataset"]
    search_fields = ["series_uid", "series_description"]
    inlines = [VolumeInline]


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["patient", "series", "value", "source", "is_current", "created_by", "created_at"]
    list_filter = ["value", "source", "is_current"]


class ImportItemInline(admin.TabularInline):
    model = ImportItem
    extra = 0
    readonly_fields = ["path", "status", "reason", "series"]
    can_delete = False


@admin.register(ImportReport)
class ImportReportAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "source", "job", "created_at"]
    list_filter = ["dataset"]
    inlines = [ImportItemInline]


class CropBoxVersionInline(admin.TabularInline):
    model = CropBoxVersion
    extra = 0
    readonly_fields = ["version", "lps_min", "lps_max", "status", "source", "updated_by", "updated_at"]
    can_delete = False


@admin.register(CropBox)
class CropBoxAdmin(admin.ModelAdmin):
    """Boxes are read here; they are edited in the viewer (versions, conflicts) so history stays whole."""

    list_display = ["series", "side", "status", "source", "version", "updated_by", "updated_at"]
    list_filter = ["status", "source", "side", "series__study__patient__dataset"]
    readonly_fields = ["series", "side", "lps_min", "lps_max", "voxel_min", "voxel_max", "status", "source", "version",
                       "updated_by", "updated_at"]
    inlines = [CropBoxVersionInline]
