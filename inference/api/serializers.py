from rest_framework import serializers

from adrenal_site.jobs.public import public_text
from annotations.api.strict import IdField, QueryChoiceField, QueryFloatField, StrictCharField

from ..ml.presets import PRESETS
from ..models import TrainingRun


class TrainingRunSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text="the state of the run's job")
    stage = serializers.CharField(read_only=True, help_text="the status, or 'aggregating' while folds are joined")
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = TrainingRun
        fields = ["id", "dataset", "name", "preset", "status", "stage", "config", "pretrained", "version", "promoted",
                  "operating_value", "objective", "created_at", "finished_at"]

    def to_representation(self, instance):
        """The weights a run started from as the requesting user may read them: the file's name, not where it lies
        on the server, for non-admins (``public_text``, as a job's message)."""
        data = super().to_representation(instance)
        user = getattr(self.context.get("request"), "user", None)
        data["pretrained"] = public_text(data["pretrained"], user)
        config = data.get("config")
        if isinstance(config, dict) and isinstance(config.get("pretrained"), str):
            data["config"] = {**config, "pretrained": public_text(config["pretrained"], user)}
        return data


class PredictionQuery(serializers.Serializer):
    """``GET /api/predictions/?series=&run=``."""

    series = IdField(required=False)
    run = IdField(required=False)


class PredictionSubmission(serializers.Serializer):
    """``POST /api/predictions/``: ``series`` (a stored scan) or a multipart ``file`` (NIfTI, or a zip of a
    DICOM series) with ``dataset``; ``run`` defaults to the dataset's promoted model."""

    series = IdField(required=False, allow_null=True)
    run = IdField(required=False, allow_null=True)
    dataset = IdField(required=False, allow_null=True)
    file = serializers.FileField(required=False, allow_empty_file=False)


class RunStartSerializer(serializers.Serializer):
    """``POST /api/runs/start/``."""

    dataset = IdField()
    preset = serializers.ChoiceField(choices=list(PRESETS), default="fast")
    overrides = serializers.DictField(required=False, default=dict)
    name = StrictCharField(required=False, allow_blank=True, max_length=200, default="")


class ThresholdQuery(serializers.Serializer):
    """``GET /api/evaluations/<id>/threshold/?value=&level=&aggregator=`` (aggregator: the run's if absent)."""

    value = QueryFloatField(required=False)
    level = QueryChoiceField(choices=["scan", "patient"], default="scan")
    aggregator = serializers.CharField(required=False, max_length=64)

    def validate_aggregator(self, value: str) -> str:
        known = self.context.get("aggregators")
        if known is not None and value not in known:
            raise serializers.ValidationError(f"unknown aggregator {value!r}; one of {', '.join(known) or 'none'}")
        return value


class PrevalenceQuery(serializers.Serializer):
    """``GET /api/evaluations/<id>/prevalence/?prevalence=&value=&aggregator=`` (aggregator: the run's if absent)."""

    prevalence = QueryFloatField(required=False)
    value = QueryFloatField(required=False)
    aggregator = serializers.CharField(required=False, max_length=64)

    def validate_aggregator(self, value: str) -> str:
        return ThresholdQuery.validate_aggregator(self, value)


class CurvesQuery(ThresholdQuery):
    """``GET /api/evaluations/<id>/curves/?level=image|scan|patient&aggregator=``."""

    level = QueryChoiceField(choices=["image", "scan", "patient"], default="scan")


class JudgeStart(serializers.Serializer):
    """``POST /api/datasets/<id>/judge/``: ``{"run": id (default: the promoted model), "force": false}``."""

    run = IdField(required=False, allow_null=True)
    force = serializers.BooleanField(required=False, default=False)

    def validate_force(self, value: bool) -> bool:
        if not isinstance(self.initial_data.get("force", False), bool):
            raise serializers.ValidationError("true or false")
        return value


class EvaluationStart(serializers.Serializer):
    """``POST /api/runs/<id>/evaluations/``: ``{"objective": "accuracy" | "youden" | "sensitivity>=0.95" |
    "specificity>=0.9"}``."""

    objective = StrictCharField(required=False, allow_blank=True, max_length=32)
