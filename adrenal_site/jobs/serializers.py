from rest_framework import serializers

from adrenal_site.roles import ADMIN, has_role

from .models import Job
from .public import public_text, public_value


class JobSerializer(serializers.ModelSerializer):
    # null for a job nobody started (the demo, the DICOM node, a deleted user) and one not yet finished: the
    # schema says so (nullable), or a client generated from it rejects the answer
    created_by = serializers.StringRelatedField(allow_null=True)
    duration_s = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Job
        fields = [
            "id", "kind", "status", "progress", "message", "error", "result", "celery_id", "queue", "worker",
            "attempts", "cancel_requested", "parent", "created_by", "created_at", "started_at", "finished_at",
            "duration_s",
        ]
        read_only_fields = fields

    def to_representation(self, instance):
        """Message, error and result as the requesting user may read them (no server paths or tracebacks for
        non-admins); the worker's host name for admins only."""
        data = super().to_representation(instance)
        request = self.context.get("request")
        user = getattr(request, "user", None)
        data["message"] = public_text(data["message"], user)
        data["error"] = public_text(data["error"], user)
        data["result"] = public_value(data["result"], user)
        if not has_role(user, ADMIN):
            data["worker"] = ""
        return data
