"""Accounts: the role groups, site set-up (``manage.py setup_site``) and API tokens."""
