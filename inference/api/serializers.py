from rest_framework import serializers

from ..models import TrainingRun


class TrainingRunSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text="the state of the run's job")
    stage = serializers.CharField(read_only=True, help_text="the status, or 'aggregating' while folds are joined")
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = TrainingRun
        fields = ["id", "dataset", "name", "preset", "status", "stage", "config", "pretrained", "version", "promoted",
                  "operating_value", "objective", "created_at", "finished_at"]
