from django.contrib import admin

from .models import Job
from .runner import request_cancel


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "progress", "message", "created_by", "created_at", "finished_at")
    list_filter = ("kind", "status", "queue")
    search_fields = ("message", "error", "celery_id")
    readonly_fields = [f.name for f in Job._meta.fields]
    actions = ["cancel"]

    @admin.action(description="Cancel selected jobs")
    def cancel(self, request, queryset):
        for job in queryset:
            request_cancel(job, by=request.user)
