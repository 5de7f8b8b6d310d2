"""Request fields that take JSON numbers only: no strings (``"123"`` is not 123 nor [1, 2, 3]), no booleans
(``true`` is not 1), no fractions where a whole number belongs (a version 5.9 is not 5), nothing infinite.
Bad input becomes a 400 whose body names the field."""
from __future__ import annotations

import math

from rest_framework import serializers

from adrenal_site.api_params import MAX_INT, unknown_value  # the one bound of ids and integers; the one refusal wording


class StrictFloatField(serializers.FloatField):
    """A finite JSON number (integer or fraction), never a string or a boolean."""

    default_error_messages = {"invalid": "expected a number (a JSON number, not a string or true/false)",
                              "not_finite": "expected a finite number"}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        if isinstance(data, int) and abs(data) > 1e300:
            self.fail("not_finite")
        value = float(data)
        if not math.isfinite(value):
            self.fail("not_finite")
        return super().to_internal_value(value)


class StrictIntegerField(serializers.IntegerField):
    """A whole JSON number, never a string, a boolean or a fraction."""

    default_error_messages = {"invalid": "expected a whole number (a JSON integer, not a string, fraction or true/false)"}

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", MAX_INT)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


def lps_point(**kwargs) -> serializers.ListField:
    """``[x, y, z]`` mm: exactly three strict numbers."""
    kwargs.setdefault("help_text", "[x, y, z] mm, patient LPS")
    return serializers.ListField(child=StrictFloatField(), min_length=3, max_length=3, **kwargs)


def first_error(errors) -> str:
    """A readable one-line message from serializer errors (for a ``detail``)."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            return f"{key}: {first_error(value)}" if key != "non_field_errors" else first_error(value)
    if isinstance(errors, list) and errors:
        return first_error(errors[0])
    return str(errors)


class StrictCharField(serializers.CharField):
    """Text only: a number or a boolean is refused rather than turned into text."""

    default_error_messages = {"invalid": "expected text (a JSON string)"}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class IdField(serializers.IntegerField):
    """A row id: a whole JSON number, or its decimal digits as text (forms and query strings send text); never a
    boolean, a fraction, ``1e400`` or a number past the database's integer range."""

    default_error_messages = {"invalid": "expected an id (a whole number)"}

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_INT)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, str):
            text = data.strip()
            if not text.isascii() or not text.isdigit() or len(text) > 12:
                self.fail("invalid")
            data = int(text)
        if not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class QueryFloatField(serializers.FloatField):
    """A finite number from a query string (``?value=0.3``); ``nan``, ``inf`` and ``1e400`` are refused."""

    default_error_messages = {"invalid": "expected a finite number"}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        try:
            value = float(data)
        except (TypeError, ValueError, OverflowError):
            self.fail("invalid")
        if not math.isfinite(value):
            self.fail("invalid")
        return value


class QueryChoiceField(serializers.ChoiceField):
    """One of a few values from a query string (``?level=scan``); another is refused naming the values it takes,
    in ``adrenal_site.api_params``' words (DRF's own message names none)."""

    def to_internal_value(self, data):
        if data == "" and self.allow_blank:
            return ""
        if str(data) not in self.choice_strings_to_values:
            raise serializers.ValidationError(unknown_value(str(data), self.choice_strings_to_values))
        return self.choice_strings_to_values[str(data)]


def query(serializer_class, request, **context):
    """The validated query parameters of ``request`` through ``serializer_class``; a 400 naming the field
    otherwise (``ValidationError``)."""
    s = serializer_class(data=request.query_params.dict(), context=context)
    s.is_valid(raise_exception=True)
    return s.validated_data
