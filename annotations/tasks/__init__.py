"""Celery tasks of the study store (one module per area, imported here for autodiscovery)."""
import importlib
import pkgutil

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
