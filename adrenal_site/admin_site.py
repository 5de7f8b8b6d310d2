"""The Django admin for the ``admin`` role: users in the admin group (not only staff and superusers) open it,
sign in to it, and hold every model permission there, so they manage users, groups (roles), datasets and
imports as the README says. Installed in place of ``django.contrib.admin`` by ``adrenal_site.admin_apps``."""
from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm

from adrenal_site.roles import ADMIN, has_role


def may_administer(user) -> bool:
    return bool(user and user.is_active and (user.is_staff or has_role(user, ADMIN)))


class RoleAdminAuthenticationForm(AdminAuthenticationForm):
    def confirm_login_allowed(self, user):
        if not has_role(user, ADMIN):
            super().confirm_login_allowed(user)  # staff rule and its message


class AdrenalAdminSite(admin.AdminSite):
    site_header = "Adrenal CT administration"
    site_title = "Adrenal CT admin"
    login_form = RoleAdminAuthenticationForm

    def has_permission(self, request) -> bool:
        return may_administer(request.user)


class RoleAdminPermissionBackend:
    """Authorisation only (authenticates nobody): a user with the admin role holds every model permission."""

    def authenticate(self, request, **credentials):
        return None

    def has_perm(self, user_obj, perm, obj=None) -> bool:
        return has_role(user_obj, ADMIN)

    def has_module_perms(self, user_obj, app_label) -> bool:
        return has_role(user_obj, ADMIN)
