"""Sign-in throttling: failed password attempts counted per client address and per (address, username), shared
by the login page, the admin's login and the API token endpoint, so guessing is slowed whichever door is used.

After ``ADRENAL_LOGIN_MAX_FAILURES`` failures of one username from one address (or five times as many from one
address, any usernames) within ``ADRENAL_LOGIN_WINDOW_SECONDS``, further attempts there are refused (HTTP 429)
until the oldest failure leaves the window; a successful sign-in clears that username's count. Counts live in
Django's default cache (``ADRENAL_CACHE_URL``: Redis in production, so every web process shares them).
"""
from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from rest_framework.throttling import AnonRateThrottle

PER_ADDRESS_FACTOR = 5


def client_address(request) -> str:
    """The client's address: REMOTE_ADDR (a proxy in front must set it, e.g. gunicorn's --forwarded-allow-ips)."""
    return request.META.get("REMOTE_ADDR") or "unknown"


def _keys(request, username: str) -> list[tuple[str, int]]:
    limit = int(settings.ADRENAL_LOGIN_MAX_FAILURES)
    address = client_address(request)
    return [(f"login-fail:{address}:{(username or '').strip().lower()[:150]}", limit),
            (f"login-fail:{address}", limit * PER_ADDRESS_FACTOR)]


def _recent(key: str, now: float) -> list[float]:
    window = float(settings.ADRENAL_LOGIN_WINDOW_SECONDS)
    return [t for t in cache.get(key, []) if t > now - window]


def seconds_blocked(request, username: str) -> int:
    """0 when this address may try ``username`` now, else the seconds until it may."""
    now = time.time()
    window = float(settings.ADRENAL_LOGIN_WINDOW_SECONDS)
    wait = 0.0
    for key, limit in _keys(request, username):
        times = _recent(key, now)
        if len(times) >= limit:
            wait = max(wait, times[-limit] + window - now)
    return int(wait) + 1 if wait > 0 else 0


def record_failure(request, username: str) -> None:
    now = time.time()
    window = int(settings.ADRENAL_LOGIN_WINDOW_SECONDS)
    for key, limit in _keys(request, username):
        cache.set(key, [*_recent(key, now), now][-limit:], window)  # the last ``limit`` are all a block needs


def clear_failures(request, username: str) -> None:
    cache.delete(_keys(request, username)[0][0])


class ThrottleBackend:
    """First authentication backend: refuses (PermissionDenied, which ends ``authenticate``) while the address
    is blocked for that username, on every door that authenticates with the request (login page, admin, token
    endpoint); otherwise lets the next backend decide."""

    def authenticate(self, request, username=None, **kwargs):
        if request is not None and seconds_blocked(request, username or ""):
            raise PermissionDenied("too many failed sign-in attempts")
        return None  # no get_user: sessions never name this backend


def on_login_failed(sender, credentials, request=None, **kwargs) -> None:
    if request is not None:
        record_failure(request, credentials.get("username") or "")


def on_logged_in(sender, request, user, **kwargs) -> None:
    if request is not None:
        clear_failures(request, user.get_username())


class TokenRateThrottle(AnonRateThrottle):
    """Requests to the token endpoint per client address, whatever their outcome (rate ``token``)."""

    scope = "token"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
