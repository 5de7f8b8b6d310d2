"""Shapes the OpenAPI schema (drf-spectacular) uses for answers that no serializer of the endpoint describes, one
definition each: ``DETAIL``, the body of an error or refusal (``{"detail": ...}``, as DRF's own errors and the
API's 404s), ``JSON``, an object, and ``JSON_LIST``, a bare list of objects. Every view that answers a status
other than its method's default (202 for a job or import that was queued, 409 for a stale or finished object,
200 for a write that changed nothing) names it in its ``extend_schema`` with these, so a client generated from
the schema expects the status and body the endpoint really sends (``tests/foundation/test_api_contract.py``
checks real answers against the schema). ``AutoSchema`` adds the refusals every operation can answer (400,
401, 403, 404, and 413 and 415 for a body) beside what the view declares. ``query_parameters`` declares the
query parameters a view reads (filters, paging) from the same tables it checks them with, so the docs list
them with their values."""
from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from .api_params import Pagination

DETAIL = inline_serializer("Detail", {"detail": serializers.CharField()})
JSON = OpenApiTypes.OBJECT
JSON_LIST = {"type": "array", "items": {"type": "object", "additionalProperties": {}}}


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema of a view, plus the refusals any operation of the API answers, so a client
    generated from the schema expects them (it rejected them as undocumented before): 400 with the field
    errors (``{"field": ["..."]}``) or ``{"detail"}`` (a bad query parameter, a NUL in one, more than 1000 of
    them, a bad body); 401 and 403 (``{"detail"}``, no credentials or a role that may not) unless the view
    lets anyone in; 404 (``{"detail"}``) where the path names an object; 413 (the limit named) and 415
    (``{"detail"}``, a media type it does not read) where the operation reads a body. A status the view
    declares itself is kept as declared."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        refusals = {"400": (JSON, "the request was refused: field errors as {field: [...]}, or {detail}")}
        if not all(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            refusals["401"] = (DETAIL, "no credentials: a session or a token (POST /api/auth/token/)")
            refusals["403"] = (DETAIL, "your role does not allow this")
        if "{" in self.path:
            refusals["404"] = (DETAIL, "no such object among those you may see")
        if self.method in ("POST", "PUT", "PATCH") and self._get_request_body():
            refusals["413"] = (JSON, "the body is over the size limit it names")
            refusals["415"] = (DETAIL, "a body of a media type the operation does not read")
        for code, (shape, about) in refusals.items():
            if code not in responses:
                response = self._get_response_for_code(shape, code, direction=direction)
                responses[code] = {**response, "description": about}
        return responses


def query_parameters(choices: dict | None = None, *, sets: dict | None = None, page: bool = False,
                     integers: dict | None = None, **text: str) -> list[OpenApiParameter]:
    """The query parameters an endpoint reads, for its ``extend_schema(parameters=...)``, from the same tables the
    endpoint checks them against: ``choices`` ``{name: values}`` (one of them), ``sets`` ``{name: values}`` (a
    comma-separated set of them), ``integers`` ``{name: (min, max, description)}`` (a whole number in that
    range), ``page`` the list's ``?limit=`` and ``?offset=`` (as ``Pagination`` reads
    them), and ``text`` ``name="description"`` a free-text one."""
    params = [OpenApiParameter(name, str, enum=list(values), description=f"one of {', '.join(values)}")
              for name, values in (choices or {}).items()]
    params += [OpenApiParameter(name, str, description=f"comma-separated, each one of {', '.join(values)}")
               for name, values in (sets or {}).items()]
    params += [OpenApiParameter(name, str, description=about) for name, about in text.items()]
    params += [OpenApiParameter(name, {"type": "integer", "minimum": low, "maximum": high}, description=about)
               for name, (low, high, about) in (integers or {}).items()]
    if page:
        params += [OpenApiParameter(name, {"type": "integer", **Pagination.schema_bounds[name]},
                                    description=about)
                   for name, about in (("limit", Pagination.limit_query_description),
                                       ("offset", Pagination.offset_query_description))]
    return params
