"""Celery tasks of 2.5D images, training, evaluation and inference (one module per area, imported here for autodiscovery)."""
import importlib
import pkgutil

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
