"""What a job's message and error may show to whom: admins read them whole; everyone else reads them without
server paths (an absolute path becomes ``…/<its last part>``) and without tracebacks (the error is reduced to
its last line, the exception itself).
"""
from __future__ import annotations

import re

from adrenal_site.roles import ADMIN, has_role

# An absolute path of two or more parts that is not part of a URL or of a longer word: "/srv/data/x.nii.gz".
_PATH = re.compile(r"(?<![\w:/.~-])(?:/[\w.@+~-]+){2,}/?")
_WINDOWS_PATH = re.compile(r"\b[A-Za-z]:\\(?:[^\\\s'\"]+\\)*([^\\\s'\"]*)")


def without_paths(text: str) -> str:
    """``text`` with every absolute server path shortened to ``…/<last part>``."""
    text = _PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text or "")
    return _WINDOWS_PATH.sub(lambda m: "…\\" + m.group(1), text)


def without_traceback(text: str) -> str:
    """A Python traceback reduced to its last non-empty line (the exception); other text unchanged."""
    if "Traceback (most recent call last)" not in (text or ""):
        return text or ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def public_text(text: str, user) -> str:
    """A job's message or error as ``user`` may read it."""
    if has_role(user, ADMIN):
        return text or ""
    return without_paths(without_traceback(text or ""))


def public_value(value, user):
    """``public_text`` through a JSON value (a job's result): every string in it, keys kept."""
    if has_role(user, ADMIN):
        return value
    if isinstance(value, str):
        return without_paths(value)
    if isinstance(value, list):
        return [public_value(v, user) for v in value]
    if isinstance(value, dict):
        return {k: public_value(v, user) for k, v in value.items()}
    return value
