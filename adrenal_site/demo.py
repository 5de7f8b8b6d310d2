"""The demo dataset loaded by `make run` into an empty database."""
from __future__ import annotations


def load_demo_dataset() -> str:
    """Load the demo dataset when the database has none. Returns what it did, for the console."""
    from annotations.models import Dataset

    if Dataset.objects.exists():
        return "demo data: the database already has datasets; loading nothing"
    return "demo data: not available yet (arrives with the demo-data issue); loading nothing"
