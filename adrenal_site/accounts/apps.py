from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "adrenal_site.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from .throttle import on_logged_in, on_login_failed

        user_login_failed.connect(on_login_failed, dispatch_uid="adrenal-login-failed")
        user_logged_in.connect(on_logged_in, dispatch_uid="adrenal-logged-in")
