from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Models and verdicts"

    def ready(self) -> None:
        from .signals import connect_to_store  # noqa: PLC0415 - it imports models, loaded only now

        connect_to_store()
