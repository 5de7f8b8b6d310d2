"""Content-Security-Policy on every response, from ``settings.ADRENAL_CSP`` (Django 5 has no built-in CSP).

``ADRENAL_CSP`` maps each directive to its sources, e.g. ``{"script-src": ["'self'"]}``; the policy allows no
inline script, so every page keeps its JavaScript in static files and its data in ``json_script`` blocks or
``data-`` attributes. A view that needs more (the API docs' Redoc writes its styles inline) is wrapped in
:func:`csp_extend`, which adds sources to named directives of that view's responses only.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings

HEADER = "Content-Security-Policy"


def policy_text(policy: dict[str, list[str]]) -> str:
    """``{"default-src": ["'self'"], ...}`` -> ``"default-src 'self'; ..."`` (directives in the given order)."""
    return "; ".join(f"{name} {' '.join(sources)}".strip() for name, sources in policy.items())


def extended(policy: dict[str, list[str]], extra: dict[str, list[str]]) -> dict[str, list[str]]:
    """``policy`` with ``extra``'s sources added to each named directive (created when missing)."""
    out = {name: list(sources) for name, sources in policy.items()}
    for name, sources in extra.items():
        out.setdefault(name, [])
        out[name] += [s for s in sources if s not in out[name]]
    return out


def csp_extend(**directives: list[str]) -> Callable:
    """View decorator: add sources to directives for this view (keyword ``style_src`` is ``style-src``)."""
    extra = {name.replace("_", "-"): list(sources) for name, sources in directives.items()}

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            response = view(request, *args, **kwargs)
            response.csp_extra = extra
            return response

        return wrapped

    return decorate


class ContentSecurityPolicyMiddleware:
    """Sets the Content-Security-Policy header (unless the response already has one)."""

    def __init__(self, get_response: Callable):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = getattr(settings, "ADRENAL_CSP", None)
        if policy and HEADER not in response:
            extra = getattr(response, "csp_extra", None)
            response[HEADER] = policy_text(extended(policy, extra) if extra else policy)
        return response
