"""One series (or one pass of a series) as the importer handles it: its instances and how it was found."""
from __future__ import annotations

from dataclasses import dataclass, field

from .headers import InstanceHeader


@dataclass
class SeriesGroup:
    key: str
    uid_source: str  # "dicom" or "folder+geometry"
    study_key: str
    study_uid_source: str
    folder: str  # relative to the import root
    instances: list[InstanceHeader] = field(default_factory=list)
    duplicates: list[tuple[InstanceHeader, InstanceHeader]] = field(default_factory=list)  # (dropped, kept)
    # Set when the series held several passes (``passes.split_passes``): this group is one of them.
    parent_key: str = ""  # the key of the whole series (SeriesInstanceUID or its fallback)
    pass_label: str = ""  # what this pass is, from the values that tell it apart (stable: part of ``key``)
    pass_note: str = ""  # how the series was split, for the report and the scan's notes
    # Odd instances left out of this series (another orientation, matrix size or image type): (header, reason).
    excluded: list[tuple[InstanceHeader, str]] = field(default_factory=list)
    # What grouping had to decide about its instances (two images under one SOP Instance UID), for the notes.
    notes: list[str] = field(default_factory=list)

    @property
    def first(self) -> InstanceHeader:
        return self.instances[0]

    @property
    def frame_count(self) -> int:
        return sum(len(h.frames) for h in self.instances)

    def describe(self) -> str:
        """"folder [description] (n files)"; a series lying at the top of the import (folder ".", e.g. a zip of
        the files themselves) is named without a folder: the report read ". [CT Body 3.0] (20 files)"."""
        desc = self.first.meta.get("SeriesDescription") or ""
        where = "" if self.folder in ("", ".") else f"{self.folder} "
        if self.pass_label:
            return f"{where}[{desc or self.parent_key}] pass {self.pass_label} ({len(self.instances)} files)"
        return f"{where}[{desc or self.key}] ({len(self.instances)} files)"
