"""API tokens for API clients."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny

from adrenal_site.api_schema import DETAIL, JSON
from adrenal_site.parsers import SafeJSONParser

from .throttle import TokenRateThrottle, seconds_blocked


class ObtainToken(ObtainAuthToken):
    """POST username and password, get a token for ``Authorization: Token <key>``. Requests per address are
    limited (rate ``token``) and failed attempts count with the login page's (429 while blocked)."""

    permission_classes = [AllowAny]
    throttle_classes = [TokenRateThrottle]
    parser_classes = [FormParser, MultiPartParser, SafeJSONParser]  # deep JSON is a 400 here too
    public = True  # the one endpoint open to anonymous users (it is the way in)

    @extend_schema(responses={200: AuthTokenSerializer, 400: JSON, 429: DETAIL})
    def post(self, request, *args, **kwargs):
        data = request.data if hasattr(request.data, "get") else {}
        wait = seconds_blocked(request, str(data.get("username", "")))
        if wait:
            raise Throttled(wait=wait, detail="Too many failed sign-in attempts from this address.")
        return super().post(request, *args, **kwargs)
