"""The API's JSON parser: DRF's, with deeply nested documents refused as a 400 (``RecursionError`` otherwise
escapes DRF's parser as a 500) and numbers too large for a float (``1e400`` parses to infinity) refused where
they are read (``annotations.api.strict``). NaN and Infinity literals are refused by DRF's strict JSON."""
from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH_MESSAGE = "JSON parse error - the document is nested too deeply"


class SafeJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(MAX_DEPTH_MESSAGE) from None


# Writes whose fields take JSON numbers and booleans only (``annotations.api.strict``: a box's coordinates
# and version, a finding's, a judging's ``force``): a form sends every value as text, so every form-encoded
# request was refused field by field while the schema offered the two form encodings. These read JSON only:
# a form is a 415 naming its media type, and the schema lists application/json alone.
JSON_ONLY = [SafeJSONParser]
