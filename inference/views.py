"""Lead pages: training runs and the model registry (the pages live in ``views_training``)."""
from .views_training import runs  # noqa: F401 - the 'runs' page, kept importable here
