from rest_framework import serializers

from .models import Job


class JobSerializer(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField()
    duration_s = serializers.FloatField(read_only=True)

    class Meta:
        model = Job
        fields = [
            "id", "kind", "status", "progress", "message", "error", "result", "celery_id", "queue", "worker",
            "attempts", "cancel_requested", "parent", "created_by", "created_at", "started_at", "finished_at",
            "duration_s",
        ]
        read_only_fields = fields
