"""The one way a service serialises a check-then-write on rows that may not exist yet.

``select_for_update()`` locks the rows a query finds; a query that finds none (no promoted run yet, no active
job, no box yet, the current label about to be replaced) locks nothing, so two requests at the same moment both
pass the check and both write. ``lock(Model, pk)`` takes the row lock of an existing parent row (the dataset,
the patient, the series) for the rest of the surrounding transaction instead: the second request waits for the
first to commit and then sees what it wrote. SQLite locks the whole database on the first write, so there this
only orders what PostgreSQL would race on."""
from __future__ import annotations

from django.db import connection, transaction


def lock(model, pk) -> None:
    """Hold ``model`` row ``pk``'s row lock until the surrounding ``transaction.atomic()`` ends (raises
    ``TransactionManagementError`` outside one; ``model.DoesNotExist`` when the row is gone)."""
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError(f"lock({model.__name__}) outside transaction.atomic()")
    model._base_manager.select_for_update().only("pk").get(pk=getattr(pk, "pk", pk))
