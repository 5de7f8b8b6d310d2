"""The outcome of a proposal for one scan."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..geometry import Box


@dataclass
class Proposal:
    """``status`` "proposed" with ``boxes`` {"R": Box, "L": Box}, or "not_covered" with ``reason``."""

    status: str
    boxes: dict[str, Box] = field(default_factory=dict)
    reason: str = ""
    method: str = ""  # "landmarks" or "mask"

    @classmethod
    def not_covered(cls, reason: str, method: str = "") -> Proposal:
        return cls(status="not_covered", reason=reason, method=method)

    def to_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "method": self.method,
                "boxes": {side: box.to_dict() for side, box in sorted(self.boxes.items())}}
