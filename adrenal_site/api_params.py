"""Query parameters of the API, read one way: a whole number (``int_param``), one of a few values
(``choice_param``) or a comma-separated set of them (``choices_param``), and the pagination every list uses
(``Pagination``). A value that is not what the parameter takes is a 400 whose body names the parameter (and, for
an enumerated one, the values it takes), never a 500 and never silently ignored.

Integers are bounded to ``MAX_INT`` (2**31 - 1) before anything reaches the database: SQLite and PostgreSQL
refuse numbers past 64 bits (``datatype mismatch``, ``bigint out of range``), and no list of this app comes near
two billion rows. Path parameters (``<int:pk>``) need nothing here: Django's integer lookups answer "no such
row" (a 404) for values past the column's range on both databases."""
from __future__ import annotations

import re

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

MAX_INT = 2**31 - 1
MAX_PAGE_SIZE = 1000  # ?limit= above it is read as MAX_PAGE_SIZE (as DRF's max_limit does)
_WHOLE = re.compile(r"-?[0-9]+")  # ASCII digits only: int() also takes "1_000", " 7" and Arabic digits


def _refuse(name: str, message: str):
    raise ValidationError({name: [message]})


def parse_int(text: str, name: str, *, min_value: int = 0, max_value: int | None = MAX_INT) -> int:
    """``text`` as a whole number in ``min_value..max_value`` (``max_value`` None: any size, for clamping by
    the caller); a ValidationError naming ``name`` otherwise."""
    text = text.strip()
    bounds = f"{min_value}..{max_value}" if max_value is not None else f"at least {min_value}"
    if not _WHOLE.fullmatch(text):
        _refuse(name, f"expected a whole number ({bounds}), not {text[:40]!r}")
    # past 40 digits only the sign matters (and int() refuses over 4300 digits)
    value = int(text) if len(text) <= 40 else (-1 if text[0] == "-" else 1) * 10**40
    if value < min_value or (max_value is not None and value > max_value):
        _refuse(name, f"{text if len(text) <= 24 else text[:20] + '...'} is out of range; expected {bounds}")
    return value


def int_param(request, name: str, default: int | None = None, *, min_value: int = 0,
              max_value: int = MAX_INT) -> int | None:
    """``?name=`` as a whole number in ``min_value..max_value``; ``default`` when absent or empty."""
    text = request.query_params.get(name)
    if text is None or text.strip() == "":
        return default
    return parse_int(text, name, min_value=min_value, max_value=max_value)


def unknown_value(value: str, choices) -> str:
    """The message refusing ``value`` of an enumerated parameter: it names the values the parameter takes."""
    return f"unknown value {value[:40]!r}; one of {', '.join(choices)}"


def _unknown(name: str, value: str, choices) -> None:
    _refuse(name, unknown_value(value, choices))


def choice_param(request, name: str, choices, default: str | None = None) -> str | None:
    """``?name=`` as one of ``choices``; ``default`` when absent or empty; 400 naming the choices otherwise."""
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if value not in choices:
        _unknown(name, value, choices)
    return value


def choices_param(request, name: str, choices) -> set[str] | None:
    """``?name=a,b`` as a set of ``choices`` (None when absent or empty); 400 naming the choices when any part
    is not one of them."""
    value = request.query_params.get(name)
    if not value:
        return None
    wanted = {part.strip() for part in value.split(",") if part.strip()}
    for part in sorted(wanted):
        if part not in choices:
            _unknown(name, part, choices)
    return wanted or None


class Pagination(LimitOffsetPagination):
    """``?limit=`` (1.., default ``PAGE_SIZE``; above ``MAX_PAGE_SIZE`` it is read as ``MAX_PAGE_SIZE``) and
    ``?offset=`` (0..2**31-1); anything else is a 400 naming the parameter. DRF's own class falls back to the
    default page for ``limit=abc`` or ``-1`` and hands a 22-digit limit to the database (a 500)."""

    max_limit = MAX_PAGE_SIZE
    limit_query_description = (f"Number of results to return per page (1 to {MAX_PAGE_SIZE}; more is read as "
                               f"{MAX_PAGE_SIZE}).")
    offset_query_description = f"The initial index from which to return the results (0 to {MAX_INT})."

    def get_limit(self, request):
        text = request.query_params.get(self.limit_query_param)
        if text is None or text.strip() == "":
            return self.default_limit
        return min(parse_int(text, self.limit_query_param, min_value=1, max_value=None), self.max_limit)

    def get_offset(self, request):
        return int_param(request, self.offset_query_param, 0)

    # the bounds each reads with, in the schema too (a client generated from it sent limit=-95, offset=-6054)
    schema_bounds = {"limit": {"minimum": 1}, "offset": {"minimum": 0, "maximum": MAX_INT}}

    def get_schema_operation_parameters(self, view):
        params = super().get_schema_operation_parameters(view)
        for p in params:
            p["schema"].update(self.schema_bounds.get(p["name"], {}))
        return params


def page_of(request, rows) -> tuple[list, dict]:
    """One page of ``rows`` (a queryset or a list) by ``?limit=`` and ``?offset=`` exactly as every list reads
    them (``Pagination``), for endpoints whose answer is an object around a list (the worklist's ``rows``, a
    dataset's ``findings``): the page, and the fields to put beside it, ``count`` (all rows), ``next`` and
    ``previous`` (links, or None)."""
    paging = Pagination()
    page = paging.paginate_queryset(rows, request)
    return list(page), {"count": paging.count, "next": paging.get_next_link(),
                        "previous": paging.get_previous_link()}
