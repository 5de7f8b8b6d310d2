"""No copy of a page or API answer in any cache unless its view says otherwise.

Pages and API answers carry patient data (pseudonyms, verdicts, DICOM text, exports), and Django sends no
``Cache-Control`` of its own: a shared proxy or the browser's disk cache could keep them after sign-out and show
them to the next user of the machine. Every response that sets no ``Cache-Control`` itself gets Django's
``never_cache`` headers (``no-cache, no-store, must-revalidate, private``); a view that wants caching says so
(the viewer's slabs and evidence thumbnails: ``private, max-age=...``, kept in the signed-in user's browser only).
Static files are answered by WhiteNoise before this middleware and keep their own long-lived headers."""
from __future__ import annotations

from django.utils.cache import add_never_cache_headers


class NoStoreByDefaultMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response
