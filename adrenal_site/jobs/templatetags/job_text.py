"""``{% load job_text %}{{ job.error|for_user:request.user }}``: a job's message or error as that user may read
it (``adrenal_site.jobs.public``)."""
from django import template

from ..public import public_text

register = template.Library()


@register.filter
def for_user(text, user) -> str:
    return public_text(text, user)
