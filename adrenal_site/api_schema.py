"""Shapes the OpenAPI schema (drf-spectacular) uses for answers that no serializer of the endpoint describes, one
definition each: ``DETAIL``, the body of an error or refusal (``{"detail": ...}``, as DRF's own errors and the
API's 404s), ``JSON``, an object, and ``JSON_LIST``, a bare list of objects. Every view that answers a status
other than its method's default (202 for a job or import that was queued, 409 for a stale or finished object,
200 for a write that changed nothing) names it in its ``extend_schema`` with these, so a client generated from
the schema expects the status and body the endpoint really sends (``tests/foundation/test_api_contract.py``
checks real answers against the schema)."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

DETAIL = inline_serializer("Detail", {"detail": serializers.CharField()})
JSON = OpenApiTypes.OBJECT
JSON_LIST = {"type": "array", "items": {"type": "object", "additionalProperties": {}}}
