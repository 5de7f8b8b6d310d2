"""Verdicts for the worklist and the viewer, and "judge every scan of this dataset" for the store's pages, from
whichever app judges scans, without the study store importing it: that app registers a :class:`VerdictSource`
in its ``AppConfig.ready()`` (``inference`` does, in ``inference.signals.connect_to_store``). With none
registered, scans have no verdict and no dataset can be judged."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import CharField, FloatField, JSONField, QuerySet, Value

from adrenal_site.jobs.models import Job

from ..models import Dataset, Series


@dataclass(frozen=True)
class VerdictSource:
    annotate_latest: Callable[[QuerySet], QuerySet]  # adds ``verdict``, ``probability``, ``verdict_cautions``, ``verdict_cutoff``
    # (series, user=None, prediction=None): the latest verdict of one scan (that user may see), or that one
    latest: Callable[..., dict | None]
    # queue "judge every scan of this dataset": (dataset, user, force=) -> the Job; ValueError saying what is missing
    start_judging: Callable[..., Job] | None = None
    # what a page needs to offer it: {"model": the model that would judge, or None, "why": why none, "job": the
    # dataset's latest such Job or None}
    judging: Callable[[Dataset], dict] | None = None


_source: VerdictSource | None = None


def register(source: VerdictSource) -> None:
    global _source
    _source = source


def annotate_latest(qs: QuerySet) -> QuerySet:
    """``qs`` (of Series) with ``verdict``, ``probability``, ``verdict_cautions`` and ``verdict_cutoff`` (the
    probability a gland is abnormal from) of each scan's latest verdict (None if none)."""
    if _source is None:
        return qs.annotate(verdict=Value(None, output_field=CharField()),
                           probability=Value(None, output_field=FloatField()),
                           verdict_cautions=Value(None, output_field=JSONField()),
                           verdict_cutoff=Value(None, output_field=FloatField()))
    return _source.annotate_latest(qs)


def latest(series: Series, user=None, prediction: int | None = None) -> dict | None:
    """The latest verdict of ``series`` (with ``user``: the latest one that user may see) as a plain dict, or
    None; with ``prediction`` (an id), that verdict if it is one of them (``is_latest`` False when a newer one
    exists)."""
    return _source.latest(series, user, prediction) if _source is not None else None


def judging(dataset: Dataset) -> dict:
    """``{"model", "why", "job"}``: the model that would judge every scan of ``dataset`` (None, with ``why``,
    when there is none) and the dataset's latest judging job (or None)."""
    if _source is None or _source.judging is None:
        return {"model": None, "why": "no app that judges scans is installed", "job": None}
    return _source.judging(dataset)


def start_judging(dataset: Dataset, user, *, force: bool = False) -> Job:
    """Queue "judge every scan of ``dataset``" (the API's ``POST /api/datasets/<id>/judge/`` does the same).
    Raises ValueError saying what is missing."""
    if _source is None or _source.start_judging is None:
        raise ValueError("no app that judges scans is installed")
    return _source.start_judging(dataset, user, force=force)
