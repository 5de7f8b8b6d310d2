"""API tokens for API clients."""
from __future__ import annotations

from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny

from adrenal_site.parsers import SafeJSONParser


class ObtainToken(ObtainAuthToken):
    """POST username and password, get a token for ``Authorization: Token <key>``."""

    permission_classes = [AllowAny]
    parser_classes = [FormParser, MultiPartParser, SafeJSONParser]  # deep JSON is a 400 here too
    public = True  # the one endpoint open to anonymous users (it is the way in)
