"""The outcome of a proposal for one scan, per side and overall."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..geometry import Box

SIDES = ("R", "L")


@dataclass
class SideProposal:
    """One gland: ``status`` "proposed" with ``box`` (LPS mm), or "not_covered" with ``note`` saying what is
    missing. ``confidence`` in [0, 1] ranks boxes for review (a heuristic of how well and how consistently the
    atlases matched, not a calibrated probability); ``method`` says what produced the box ("atlas", "mask",
    "landmarks"); ``note`` may also qualify a proposed box (e.g. widened for a lesion, clipped at the scan's end)."""

    status: str
    box: Box | None = None
    confidence: float = 0.0
    method: str = ""
    note: str = ""

    def to_dict(self) -> dict:
        out = {"status": self.status, "confidence": round(float(self.confidence), 3), "method": self.method,
               "note": self.note}
        if self.box is not None:
            out.update(self.box.to_dict())
        return out


@dataclass
class Proposal:
    """``status`` "proposed" when at least one gland has a box (``boxes`` holds those sides: {"R": Box, "L": Box}
    or one of them), else "not_covered" with ``reason``. ``sides`` gives each gland's status, confidence, method
    and note; a scan showing one gland is "proposed" with one box, the other side "not_covered" with its note."""

    status: str
    boxes: dict[str, Box] = field(default_factory=dict)
    reason: str = ""
    method: str = ""  # "atlas", "landmarks" or "mask"
    sides: dict[str, SideProposal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for side, box in self.boxes.items():  # callers that build a Proposal from boxes alone
            self.sides.setdefault(side, SideProposal("proposed", box, 0.0, self.method))
        if self.status == "not_covered":
            for side in SIDES:
                self.sides.setdefault(side, SideProposal("not_covered", None, 0.0, self.method, self.reason))

    @classmethod
    def not_covered(cls, reason: str, method: str = "") -> Proposal:
        return cls(status="not_covered", reason=reason, method=method)

    @classmethod
    def from_sides(cls, sides: dict[str, SideProposal], method: str,
                   prefix: str = "adrenal region not covered") -> Proposal:
        """Overall status from the sides: proposed when any side is; else "not_covered", the reason being
        ``prefix`` and the sides' notes ("adrenal region not covered: R: the scan ends ...; L: ...")."""
        boxes = {s: p.box for s, p in sides.items() if p.status == "proposed" and p.box is not None}
        if boxes:
            return cls(status="proposed", boxes=boxes, method=method, sides=dict(sides))
        notes = [f"{s}: {p.note}" for s, p in sorted(sides.items(), reverse=True) if p.note]
        return cls(status="not_covered", reason=f"{prefix}: {'; '.join(notes)}" if notes else prefix,
                   method=method, sides=dict(sides))

    @property
    def notes(self) -> dict[str, str]:
        return {s: p.note for s, p in self.sides.items() if p.note}

    def to_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "method": self.method,
                "boxes": {side: box.to_dict() for side, box in sorted(self.boxes.items())},
                "sides": {side: p.to_dict() for side, p in sorted(self.sides.items())}}
