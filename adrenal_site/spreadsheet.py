"""CSV cells a spreadsheet opens as text: the one guard every CSV export writes its cells through.

Excel, LibreOffice and Google Sheets read a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or
carriage return before one) as a formula. A clinician's comment such as ``-ve, no mass`` or ``+ contrast`` then
opens as ``#NAME?``, a list of flagged slices ``-40.0 -35.0`` as the number -75, and a comment or dataset name
written as ``=HYPERLINK(...)`` as a live link (CSV or formula injection, OWASP). Such a text cell is written with
a leading apostrophe, the spreadsheets' own mark for "text as typed"; numbers (``-12.5`` as a number or as the
text of one) are left alone, so coordinates stay numbers.
"""
from __future__ import annotations

import csv
import math

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def safe_cell(value):
    """``value`` as a CSV cell that a spreadsheet shows as written: text starting like a formula gets a leading
    ``'``; numbers, ``None`` and other text are returned unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number(value):
        return "'" + value
    return value


class SafeWriter:
    """``csv.writer`` whose rows go through ``safe_cell``."""

    def __init__(self, out, **kwargs):
        self._writer = csv.writer(out, **kwargs)

    def writerow(self, row):
        return self._writer.writerow([safe_cell(v) for v in row])

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)


class SafeDictWriter(csv.DictWriter):
    """``csv.DictWriter`` whose cells go through ``safe_cell`` (the header is the writer's own column names)."""

    def writerow(self, rowdict):
        return super().writerow({k: safe_cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts):
        for row in rowdicts:
            self.writerow(row)
