"""Verdicts for the worklist and the viewer, from whichever app judges scans, without the study store
importing it: that app registers a :class:`VerdictSource` in its ``AppConfig.ready()`` (``inference`` does,
with ``inference.services.verdicts.SOURCE``). With none registered, scans have no verdict."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import CharField, FloatField, QuerySet, Value

from ..models import Series


@dataclass(frozen=True)
class VerdictSource:
    annotate_latest: Callable[[QuerySet], QuerySet]  # adds ``verdict`` and ``probability`` of the latest verdict
    latest: Callable[[Series], dict | None]  # the latest verdict of one scan, as the viewer shows it


_source: VerdictSource | None = None


def register(source: VerdictSource) -> None:
    global _source
    _source = source


def annotate_latest(qs: QuerySet) -> QuerySet:
    """``qs`` (of Series) with ``verdict`` and ``probability`` of each scan's latest verdict (None if none)."""
    if _source is None:
        return qs.annotate(verdict=Value(None, output_field=CharField()),
                           probability=Value(None, output_field=FloatField()))
    return _source.annotate_latest(qs)


def latest(series: Series) -> dict | None:
    """The latest verdict of ``series`` as a plain dict, or None."""
    return _source.latest(series) if _source is not None else None
