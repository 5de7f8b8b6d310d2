"""The three roles and the checks every page and API endpoint uses.

Roles are Django groups and nest: an ``admin`` may do what a ``lead`` may, a ``lead`` what a
``clinician`` may.  Superusers count as admins.  Anonymous API requests get 401, pages redirect
to the login page; a signed-in user without the role gets 403.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from rest_framework.permissions import BasePermission

CLINICIAN, LEAD, ADMIN = "clinician", "lead", "admin"
ROLES = (CLINICIAN, LEAD, ADMIN)  # ascending
_RANK = {role: i for i, role in enumerate(ROLES)}


def role_of(user) -> str | None:
    """The highest role a user holds, or None."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    if user.is_superuser:
        return ADMIN
    cached = getattr(user, "_adrenal_role", "unset")
    if cached != "unset":
        return cached
    names = set(user.groups.values_list("name", flat=True))
    role = next((r for r in reversed(ROLES) if r in names), None)
    user._adrenal_role = role
    return role


def has_role(user, role: str) -> bool:
    held = role_of(user)
    return held is not None and _RANK[held] >= _RANK[role]


def role_required(role: str) -> Callable:
    """Page decorator: login redirect for anonymous users, 403 for the wrong role."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, role):
                raise PermissionDenied(f"This page needs the {role} role.")
            return view(request, *args, **kwargs)

        wrapped.required_role = role
        return wrapped

    return decorate


class _RolePermission(BasePermission):
    role = CLINICIAN
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, self.role)


class IsClinician(_RolePermission):
    role = CLINICIAN


class IsLead(_RolePermission):
    role = LEAD


class IsAdmin(_RolePermission):
    role = ADMIN


def ensure_groups() -> None:
    from django.contrib.auth.models import Group

    for role in ROLES:
        Group.objects.get_or_create(name=role)


def roles_context(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    return {
        "user_role": role_of(user),
        "is_lead": has_role(user, LEAD) if user else False,
        "is_admin": has_role(user, ADMIN) if user else False,
    }
