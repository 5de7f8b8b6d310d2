"""``django.contrib.admin`` with the project's admin site (``adrenal_site.admin_site``) as the default one."""
from django.contrib.admin.apps import AdminConfig


class AdrenalAdminConfig(AdminConfig):
    default_site = "adrenal_site.admin_site.AdrenalAdminSite"
