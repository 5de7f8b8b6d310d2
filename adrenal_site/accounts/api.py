"""API tokens for API clients."""
from __future__ import annotations

from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import AllowAny


class ObtainToken(ObtainAuthToken):
    """POST username and password, get a token for ``Authorization: Token <key>``."""

    permission_classes = [AllowAny]
    public = True  # the one endpoint open to anonymous users (it is the way in)
