"""Create the role groups and, with --demo, demo accounts and the demo dataset (refused when DEBUG is off: a
deployment gets no accounts whose passwords went to a terminal, and no synthetic patients)."""
from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from adrenal_site.roles import ADMIN, CLINICIAN, LEAD, ROLES, ensure_groups

DEMO_USERS = {"clinician": CLINICIAN, "lead": LEAD, "admin": ADMIN}


class Command(BaseCommand):
    help = "Create role groups; with --demo also demo accounts (one per role) and the demo dataset."

    def add_arguments(self, parser):
        parser.add_argument("--demo", action="store_true", help="create demo accounts and load the demo dataset")

    def handle(self, *args, demo: bool = False, **options):
        if demo and not settings.DEBUG:
            raise CommandError("--demo is for local use and needs DEBUG=1; with DEBUG off (a deployment) create "
                               "accounts with `manage.py createsuperuser` and the Django admin")
        if demo:  # the demo's settings first: a bad one stops here, before accounts whose passwords scroll away
            call_command("load_demo", check=True, stdout=self.stdout)
        ensure_groups()
        self.stdout.write(f"roles: {', '.join(ROLES)}")
        if not demo:
            return
        self.create_demo_accounts()
        call_command("load_demo", stdout=self.stdout)  # inference's command: the dataset and its pipeline

    def create_demo_accounts(self) -> None:
        User = get_user_model()
        created = []
        for username, role in DEMO_USERS.items():
            if User.objects.filter(username=username).exists():
                continue
            password = os.environ.get(f"ADRENAL_DEMO_{username.upper()}_PASSWORD") or secrets.token_urlsafe(9)
            user = User.objects.create_user(username=username, password=password)
            user.groups.add(Group.objects.get(name=role))
            if role == ADMIN:
                user.is_staff = True
                user.is_superuser = True
                user.save()
            created.append((username, role, password))
        if created:
            self.stdout.write(self.style.WARNING("Demo accounts (passwords shown only now):"))
            for username, role, password in created:
                self.stdout.write(f"  {username:10s} role {role:10s} password {password}")
        else:
            self.stdout.write("demo accounts exist (reset a password with: python manage.py changepassword NAME)")
