from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "adrenal_site.accounts"
    label = "accounts"
    verbose_name = "Accounts"
