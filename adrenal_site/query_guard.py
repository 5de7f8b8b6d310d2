"""Refuse a request whose query string holds a NUL character (``%00``) with a 400 naming the parameter.

Every database text column refuses NUL (PostgreSQL raises ``DataError`` on ``.filter(field="\\x00")``), and no
parameter of this app can mean anything with one, so it is stopped once here rather than in every list view.
Bodies need no such guard: Django's form ``CharField`` and DRF's ``CharField`` already refuse NUL
(``ProhibitNullCharactersValidator``), and this middleware never reads a body (upload handlers must be set
before that)."""
from __future__ import annotations

from django.http import JsonResponse


class RefuseNulInQueryMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        for key, values in request.GET.lists():
            if "\x00" in key or any("\x00" in v for v in values):
                name = key.replace("\x00", "\\x00")
                return JsonResponse({name or "query": ["a NUL character (%00) is not allowed here"]}, status=400)
        return self.get_response(request)
