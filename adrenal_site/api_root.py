"""``GET /api/``, the API's index, and the JSON answers of the API for paths that do not exist.

The index follows DRF's convention for an API root (``DefaultRouter``'s ``APIRootView`` takes the default
permission classes): it is part of the API, so like every other endpoint it answers 401 to an anonymous request
(with ``WWW-Authenticate: Token``; README and the docs name ``POST /api/auth/token/``) and 403 to a user without a
role. A signed-in user gets links to the collections their role may list, the token endpoint, the schema and the
docs. Django answers a path no pattern matches with its HTML 404 page; under ``/api/`` that is JSON instead,
in DRF's shape (``{"detail": ...}``), and so are Django's own 400, 403 and 500 answers there (DRF's views
answer their errors in JSON themselves; these are what happens outside them). ``exception_handler`` is DRF's,
plus a stored file that cannot be read (``inference.ml.volume.UnreadableVolume``): a JSON 500 naming the file
and what to do, not the generic one."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from inference.ml.volume import UnreadableVolume

from .roles import LEAD, IsClinician, has_role

API_PREFIX = "/api/"

# (key, URL name, role needed to list it) in the order the index shows them
COLLECTIONS = (
    ("datasets", "api-dataset-list", None),
    ("predictions", "api-predictions", None),
    ("jobs", "api-job-list", None),
    ("runs", "api-run-list", LEAD),
    ("runs_compare", "api-run-compare", LEAD),
)
ABOUT = (("auth_token", "api-token"), ("schema", "api-schema"), ("docs", "api-docs"), ("redoc", "api-redoc"))


class ApiRoot(APIView):
    """Links to the collections your role may list (datasets, predictions, jobs; leads also runs and the
    run comparison), the token endpoint, the OpenAPI schema and the docs."""

    permission_classes = [IsClinician]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        links = {key: reverse(name, request=request) for key, name, role in COLLECTIONS
                 if role is None or has_role(request.user, role)}
        return Response(links | {key: reverse(name, request=request) for key, name in ABOUT})


def _is_api(request) -> bool:
    return request.path.startswith(API_PREFIX)


def not_found(request, exception=None):
    """``handler404``: JSON under /api/, the site's page elsewhere."""
    if _is_api(request):
        return JsonResponse({"detail": f"Nothing at {request.path[:200]}; see {API_PREFIX} for the API's index."},
                            status=404)
    return defaults.page_not_found(request, exception)


def request_limit(exception) -> tuple[int, str] | None:
    """The status and reason for a request Django refused for one of its size limits, else None: a body over
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413), more fields than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` or files than
    ``DATA_UPLOAD_MAX_NUMBER_FILES`` (400). Other refusals (a bad Host header, ...) keep the generic answer."""
    if isinstance(exception, RequestDataTooBig):
        return 413, (f"the request body is over the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE / 1024**2:g} MB "
                     "(files go in a multipart upload)")
    if isinstance(exception, TooManyFieldsSent):
        return 400, (f"the request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} parameters or form "
                     "fields")
    if isinstance(exception, TooManyFilesSent):
        return 400, f"the request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files"
    return None


def bad_request(request, exception=None):
    """``handler400``: a request Django refused for a size limit names the limit (:func:`request_limit`), in JSON
    under /api/ and as text on pages; any other is the generic answer."""
    limit = request_limit(exception)
    if limit:
        status, reason = limit
        if _is_api(request):
            return JsonResponse({"detail": reason}, status=status)
        return HttpResponse(f"{reason[0].upper()}{reason[1:]}.", status=status, content_type="text/plain; charset=utf-8")
    if _is_api(request):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    """``handler403``."""
    if _is_api(request):
        return JsonResponse({"detail": "You do not have permission to perform this action."}, status=403)
    return defaults.permission_denied(request, exception)


def server_error(request):
    """``handler500``."""
    if _is_api(request):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)


def exception_handler(exc, context):
    """DRF's ``EXCEPTION_HANDLER``: DRF's answers, and a JSON 500 whose detail names a damaged stored file."""
    if isinstance(exc, UnreadableVolume):
        return Response({"detail": str(exc)}, status=500)
    return drf_exception_handler(exc, context)
