"""Two requests at once, deterministically: ``race(a, b)`` runs ``a`` and ``b`` in two threads, each on its own
database connection and inside its own transaction, and holds both transactions open (a barrier before the
commit) until the other has done its work or is blocked. Without a lock both see the state before either
commits, as two web requests at the same moment would; with one, the second waits for the first to commit.

Only PostgreSQL has the row locks this is about (SQLite serialises every writer): tests using it carry
``needs_row_locks``."""
from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection, connections, transaction

needs_row_locks = pytest.mark.skipif(connection.vendor != "postgresql",
                                     reason="row locks need PostgreSQL (DATABASE_URL=postgres://...)")

HOLD_S = 3.0  # how long a transaction waits for the other one at its commit


def race(*fns: Callable[[], object]) -> list[object]:
    """Run each of ``fns`` in a thread and transaction of its own, committing only once all have done their work
    (or HOLD_S passed: one of them is waiting for a lock the other holds). Returns each one's result, or the
    exception it raised."""
    barrier = threading.Barrier(len(fns))
    results: list[object] = [None] * len(fns)

    def run(i: int, fn: Callable[[], object]) -> None:
        try:
            with transaction.atomic():
                results[i] = fn()
                try:
                    barrier.wait(HOLD_S)
                except threading.BrokenBarrierError:
                    pass  # the other one is blocked on a lock this transaction holds: commit to let it go on
        except Exception as exc:  # noqa: BLE001 - the caller looks at what each one got
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results
