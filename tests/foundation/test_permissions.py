"""Every URL the project defines refuses anonymous users and users without the required role.

The list is generated from the URL resolver, so new endpoints are covered automatically: a view
must declare its role (``role_required`` for pages, a role permission class for the API), or be
explicitly public.
"""
from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from adrenal_site import roles

PUBLIC = {"login", "logout", "api-token", "favicon"}
ROLE_BELOW = {roles.CLINICIAN: "none", roles.LEAD: "clinician", roles.ADMIN: "lead"}


def iter_patterns(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for p in resolver.url_patterns:
        if isinstance(p, URLResolver):
            if getattr(p, "app_name", None) == "admin":
                continue  # Django's admin has its own staff login
            yield from iter_patterns(p, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p


def concrete(route: str) -> str:
    route = re.sub(r"<int:\w+>", "1", route)
    route = re.sub(r"<(?:str|slug)?:?\w+>", "x", route)
    route = route.replace("^", "").replace("$", "").replace("\\.", ".")
    route = re.sub(r"\(\?P<format>[^)]*\)", "", route)
    return "/" + route


def required_role(pattern: URLPattern) -> str | None:
    view = pattern.callback
    if getattr(view, "required_role", None):
        return view.required_role
    cls = getattr(view, "cls", None) or getattr(view, "view_class", None)
    if cls is not None:
        if getattr(cls, "public", False):
            return None
        perms = getattr(cls, "permission_classes", None)
        if perms is None or cls.__module__.startswith("drf_spectacular"):
            from django.conf import settings

            perms = [settings.SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"][0]]
        for perm in perms:
            perm_cls = perm if isinstance(perm, type) else type(perm)
            if isinstance(perm, str):
                from django.utils.module_loading import import_string

                perm_cls = import_string(perm)
            if hasattr(perm_cls, "role"):
                return perm_cls.role
    return None


PATTERNS = [(route, p) for route, p in iter_patterns() if p.name not in PUBLIC and "format" not in route]


def test_every_view_declares_a_role():
    missing = [route for route, p in PATTERNS if required_role(p) is None]
    assert not missing, f"views without a role check: {missing}"


@pytest.mark.parametrize("route,pattern", PATTERNS, ids=[r for r, _ in PATTERNS])
def test_anonymous_and_wrong_role_refused(route, pattern, client, users):
    url = concrete(route)
    role = required_role(pattern)
    for method in ("get", "post"):
        response = getattr(client, method)(url)
        if url.startswith("/api/"):
            assert response.status_code == 401, (method, url, response.status_code)
        else:
            assert response.status_code == 302 and "/accounts/login/" in response["Location"], (method, url)
    client.force_login(users[ROLE_BELOW[role]])
    for method in ("get", "post"):
        response = getattr(client, method)(url)
        assert response.status_code == 403, (method, url, role, response.status_code)


def test_right_role_gets_in(client_as):
    assert client_as("clinician").get("/").status_code == 200
    assert client_as("clinician").get("/api/datasets/").status_code == 200
    assert client_as("lead").get("/runs/").status_code == 200
    assert client_as("lead").get("/api/schema/").status_code == 200


def test_token_authentication(client, users):
    from rest_framework.test import APIClient

    response = client.post("/api/auth/token/", {"username": "lead", "password": "pw-lead"})
    token = response.json()["token"]
    api = APIClient()
    assert api.get("/api/runs/").status_code == 401
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/runs/").status_code == 200


def test_csrf_enforced_for_session_api(users):
    from django.test import Client

    c = Client(enforce_csrf_checks=True)
    c.force_login(users["lead"])
    response = c.post("/api/jobs/1/cancel/")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
