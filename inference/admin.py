"""Django admin for runs (the model registry), folds, evaluations, predictions and 2.5D images: read-only
views for admins; runs are started, cancelled and promoted on the Models pages (or the API)."""
from django.contrib import admin

from .models import Evaluation, FoldRun, Image25D, Prediction, TrainingRun


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class FoldRunInline(admin.TabularInline):
    model = FoldRun
    extra = 0
    fields = ["fold", "status", "epoch", "best_epoch", "val_loss", "weights", "job"]
    readonly_fields = fields
    can_delete = False


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnly):
    list_display = ["id", "dataset", "name", "preset", "status", "version", "promoted", "operating_value", "created_at"]
    list_filter = ["dataset", "preset", "promoted"]
    search_fields = ["name"]
    inlines = [FoldRunInline]


@admin.register(Evaluation)
class EvaluationAdmin(ReadOnly):
    list_display = ["id", "run", "objective", "aggregator", "operating_value", "created_at"]
    list_filter = ["objective", "run__dataset"]
    exclude = ["result"]


@admin.register(Prediction)
class PredictionAdmin(ReadOnly):
    list_display = ["id", "series", "run", "verdict", "probability", "operating_value", "created_by", "created_at"]
    list_filter = ["verdict", "run"]


@admin.register(Image25D)
class Image25DAdmin(ReadOnly):
    list_display = ["id", "series", "slice_index", "z_mm", "boxes_version", "created_at"]
    list_filter = ["series__study__patient__dataset"]
