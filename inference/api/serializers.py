from rest_framework import serializers

from .models import TrainingRun


class TrainingRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingRun
        fields = ["id", "dataset", "name", "preset", "status", "config", "pretrained", "version", "promoted",
                  "operating_value", "objective", "created_at", "finished_at"]
