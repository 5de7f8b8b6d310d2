"""The kinds of training settings and how a value is checked against one: a number in a range (``Number``), one
of a few values (``Choice``), true/false (``Flag``), a weights file (``Weights``) or a section of named settings
(``Section``). ``ConfigError`` names the refused field's path (``mil.top_k``) and what is allowed and why. The table
of every setting is ``inference.ml.presets.SETTINGS``."""
from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class ConfigError(ValueError):
    """A training configuration value refused before any run exists: ``field`` is its path (``mil.top_k``), the
    message names it and says what is allowed and why."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}"[:700])


def show(value) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Number:
    """An integer (``kind`` int) or a finite number (``kind`` float: integers too) from ``lo`` to ``hi``
    (``open_lo``/``open_hi``: that bound excluded), or one of ``also``; None too with ``null``. Never true/false."""

    kind: type
    lo: float
    hi: float
    why: str
    open_lo: bool = False
    open_hi: bool = False
    also: tuple = ()
    null: bool = False

    def allowed(self) -> str:
        if self.kind is int:
            text = f"an integer from {self.lo} to {self.hi}"
        else:
            text = f"a number in {'(' if self.open_lo else '['}{self.lo:g}, {self.hi:g}{')' if self.open_hi else ']'}"
        extra = [show(a) for a in self.also] + (["null"] if self.null else [])
        return text + (f" or {' or '.join(extra)}" if extra else "")

    def check(self, path: str, value) -> None:
        if value is None and self.null:
            return
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or (self.kind is int and not isinstance(value, int))):
            raise ConfigError(path, f"expected {self.allowed()}, not {show(value)} ({self.why})")
        if value in self.also:
            return
        finite = isinstance(value, int) or math.isfinite(value)  # an int may be too large for a float
        above = finite and (value > self.lo if self.open_lo else value >= self.lo)
        below = finite and (value < self.hi if self.open_hi else value <= self.hi)
        if not (above and below):
            raise ConfigError(path, f"{show(value)} is out of range: allowed {self.allowed()} ({self.why})")


@dataclass(frozen=True)
class Choice:
    """One of ``values``."""

    values: tuple
    why: str

    def allowed(self) -> str:
        return "one of " + ", ".join(show(v) for v in self.values)

    def check(self, path: str, value) -> None:
        if not isinstance(value, str) or value not in self.values:
            raise ConfigError(path, f"expected {self.allowed()}, not {show(value)} ({self.why})")


@dataclass(frozen=True)
class Flag:
    """true or false (not 0/1, not text)."""

    why: str

    def allowed(self) -> str:
        return "true or false"

    def check(self, path: str, value) -> None:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, not {show(value)} ({self.why})")


@dataclass(frozen=True)
class Weights:
    """'auto', 'none' or the path of an existing state-dict file."""

    why: str

    def allowed(self) -> str:
        return "'auto', 'none' or the path of a weights file"

    def check(self, path: str, value) -> None:
        if not isinstance(value, str) or not value or len(value) > 500:
            raise ConfigError(path, f"expected {self.allowed()}, not {show(value)} ({self.why})")
        if value not in ("auto", "none") and not Path(value).is_file():
            raise ConfigError(path, f"no weights file at {show(value)}: expected {self.allowed()}")


@dataclass(frozen=True)
class Section:
    """A mapping of named settings (``fields``); a plain value cannot replace it."""

    fields: dict
    why: str

    def allowed(self) -> str:
        return "a mapping of " + ", ".join(self.fields)

    def check(self, path: str, value) -> None:
        if not isinstance(value, dict):
            example = next(iter(self.fields))
            raise ConfigError(path, f"a section ({self.why}) cannot be a plain value: give a mapping of its settings "
                                    f'like {{"{example}": ...}} (or --set {path}.{example}=...), not {show(value)}')
        for key, v in value.items():
            spec(self.fields, key, f"{path}.{key}", path).check(f"{path}.{key}", v)


def spec(fields: dict, key, path: str, where: str = "", internal: Mapping[str, str] | None = None):
    """The setting ``key`` of ``fields``; ConfigError naming it with close and valid names when unknown, or saying
    why when it is one of ``internal`` (top-level keys no override may set, with the reason)."""
    if isinstance(key, str) and key in fields:
        return fields[key]
    if where == "" and internal and key in internal:
        raise ConfigError(path, f"cannot be overridden: {internal[key]}")
    close = difflib.get_close_matches(str(key), list(fields), n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(f'{where}.{c}' if where else c for c in close)}?)" if close else ""
    raise ConfigError(path, f"unknown setting{hint}; {'the settings of ' + where if where else 'the settings'} are: "
                            f"{', '.join(fields)}")
