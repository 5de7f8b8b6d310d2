"""What a result says, independent of Django: the verdict with its numbers, per-side findings with their crop
boxes (LPS mm), the model, and the source series the result refers to (its headers and instances)."""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from datetime import datetime

from pydicom.dataset import Dataset

from ..geometry import Box

VERDICTS = ("abnormal", "normal", "not_assessable")
RESEARCH_STATEMENT = ("Research tool, not a medical device: this result is not for diagnosis or patient management "
                      "and must be checked against the images by a radiologist.")


@dataclass(frozen=True)
class SideFinding:
    """One adrenal side: ``score`` (0-1: a per-gland model's score of that gland, the top-k mean of its image
    probabilities; a joined model's fraction of images voted abnormal with the other side blanked), ``abnormal``
    (that side's verdict; None without a score) and the crop ``box`` the images were cut from (None when the scan
    had none)."""

    side: str  # "R" or "L"
    score: float | None
    abnormal: bool | None
    box: Box | None

    @property
    def name(self) -> str:
        return "right" if self.side == "R" else "left"


@dataclass(frozen=True)
class ModelInfo:
    """The model that judged the scan: ``name`` (e.g. "adrenal-2.5d run 12"), ``version`` and parameters
    worth recording (preset, backbone, objective)."""

    name: str
    version: str
    parameters: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Findings:
    """A verdict on one scan. ``verdict`` is one of ``VERDICTS``; ``reason`` says why a scan is not assessable;
    ``probability`` is the mean image probability, ``fraction`` the fraction of images voted abnormal (the
    score compared with ``operating_value``); ``flagged_slices_mm`` are LPS z of images voted abnormal and
    ``slice_scores`` ``[(z_mm, probability), ...]``; ``cautions`` are sentences saying where the scan lies outside
    what the model was validated on (``inference.ml.acquisition.acquisition_cautions``: the verdict stands but is
    less certain). ``score`` is set for per-gland models, whose operating value applies to the scan score (the
    max of the glands' top-k mean image probabilities), not to ``fraction``."""

    verdict: str
    reason: str
    probability: float | None
    fraction: float | None
    operating_value: float | None
    sides: dict[str, SideFinding]
    flagged_slices_mm: tuple[float, ...]
    slice_scores: tuple[tuple[float, float], ...]
    model: ModelInfo
    cautions: tuple[str, ...] = ()
    score: float | None = None  # per-gland runs: the scan score the operating value applies to (max of the glands')

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")

    @property
    def verdict_text(self) -> str:
        return self.verdict.replace("_", " ")

    def title(self) -> str:
        """The key images' headline: the verdict and the number the operating value applies to (the scan score
        for per-gland models, else the fraction of images voted abnormal)."""
        text = f"Adrenal CT AI: {self.verdict_text.upper()}"
        if self.operating_value is None:
            return text
        if self.score is not None:
            return text + f" (scan score {self.score:.2f}, operating value {self.operating_value:.2f})"
        if self.fraction is not None:
            return text + f" (fraction {self.fraction:.2f}, operating value {self.operating_value:.2f})"
        return text

    def summary(self) -> str:
        """One line: the verdict, the numbers behind it, or the reason."""
        if self.verdict == "not_assessable":
            return f"Not assessable: {self.reason or 'no reason given'}"
        parts = [f"{self.verdict_text.capitalize()}"]
        if self.score is not None and self.operating_value is not None:
            parts.append(f"scan score {self.score:.2f} (operating value {self.operating_value:.2f})")
        elif self.fraction is not None and self.operating_value is not None:
            parts.append(f"fraction of images voted abnormal {self.fraction:.2f} (operating value "
                         f"{self.operating_value:.2f})")
        if self.probability is not None:  # per-gland models: the calibrated scan score, not a mean over images
            parts.append(f"{'calibrated probability' if self.score is not None else 'mean probability'} "
                         f"{self.probability:.2f}")
        flagged = [s.name for s in self.sides.values() if s.abnormal]
        if flagged:
            parts.append("side(s) pointed to: " + ", ".join(flagged))
        return "; ".join(parts)


@dataclass(frozen=True)
class SourceImage:
    """One instance of the source series: SOP class and instance UIDs and ImagePositionPatient (LPS mm)."""

    sop_class_uid: str
    sop_instance_uid: str
    position: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class SourceSeries:
    """The series a result refers to: ``header`` is one of its instances without pixel data (patient, study,
    series and frame-of-reference attributes are copied from it); ``images`` are all its instances."""

    header: Dataset
    images: tuple[SourceImage, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "header", conformant_header(with_type2(utf8_header(self.header))))

    @property
    def study_uid(self) -> str:
        return str(self.header.StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.header.SeriesInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.header.get("FrameOfReferenceUID", "") or "")

    def nearest(self, z_mm: float) -> SourceImage | None:
        """The instance whose position is nearest to LPS ``z_mm`` (axial series), or None without positions."""
        placed = [im for im in self.images if im.position is not None]
        if not placed:
            return None
        return min(placed, key=lambda im: abs(im.position[2] - z_mm))

    def evidence(self) -> list[Dataset]:
        """One small dataset per instance (patient, study and SOP identity), as highdicom's SR evidence wants."""
        out = []
        for im in self.images:
            ds = Dataset()
            for keyword in PATIENT_STUDY_KEYWORDS:
                if keyword in self.header:
                    setattr(ds, keyword, self.header.data_element(keyword).value)
            ds.SeriesInstanceUID = self.series_uid
            ds.SOPClassUID = im.sop_class_uid
            ds.SOPInstanceUID = im.sop_instance_uid
            ds.Modality = self.header.get("Modality", "CT")
            out.append(ds)
        return out


RESULT_CHARACTER_SET = "ISO_IR 192"  # UTF-8: every result is written in it, whatever its source used


def utf8_header(header: Dataset) -> Dataset:
    """A copy of ``header`` with its text decoded (pydicom, by the source's SpecificCharacterSet) and its
    SpecificCharacterSet UTF-8, so the results copy names that encode in any script. Copied as it was, a Japanese
    study's ``\\ISO 2022 IR 87`` (an empty first value: code extensions) or a misspelt ``ISO-IR 100`` made
    highdicom refuse to build the SR and the key images, and the PACS never got its answer."""
    if str(header.get("SpecificCharacterSet", "") or "") == RESULT_CHARACTER_SET:
        return header
    out = copy.deepcopy(header)
    out.decode()  # an unknown character set is read as the default repertoire (pydicom warns)
    out.SpecificCharacterSet = RESULT_CHARACTER_SET
    return out


# Type 2 patient and study attributes (present, possibly empty) that source instances often leave out
TYPE2_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                  "ReferringPhysicianName", "StudyID", "AccessionNumber")


def with_type2(header: Dataset) -> Dataset:
    """``header`` with each of ``TYPE2_KEYWORDS`` it lacks added empty (a copy when any is missing). A CT without
    an AccessionNumber or StudyID (common: research exports, modalities without a worklist) made highdicom fail
    with AttributeError, so that study never got its SR; empty is what the standard asks for when unknown."""
    missing = [k for k in TYPE2_KEYWORDS if k not in header]
    if not missing:
        return header
    out = copy.deepcopy(header)
    for keyword in missing:
        setattr(out, keyword, "")
    return out


def _date(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())  # '2024-01-17' and '2024.01.17' as older systems write
    try:
        return datetime.strptime(digits, "%Y%m%d").strftime("%Y%m%d") if len(digits) == 8 else ""
    except ValueError:
        return ""


def _time(value: str) -> str:
    digits = value.replace(":", "").strip()
    return digits if TIME_RE.match(digits) else ""


TIME_RE = re.compile(r"^([01][0-9]|2[0-3])([0-5][0-9]([0-5][0-9](\.[0-9]{1,6})?)?)?$")
CLEANERS = {"StudyDate": _date, "PatientBirthDate": _date, "StudyTime": _time,
            "PatientSex": lambda v: v.strip().upper()[:1] if v.strip().upper() in ("M", "F", "O", "MALE", "FEMALE",
                                                                                  "OTHER") else ""}


def conformant_header(header: Dataset) -> Dataset:
    """``header`` with the dates, times and sex that highdicom parses made conformant (a copy when any is changed):
    a date written '2024-01-17' becomes 20240117, a value that is none ('abc', a time '25:00', a sex 'X' or 'U')
    is left empty (Type 2: unknown); a weight or size with a decimal comma ('1,75') is read as a number, one that is
    none is left out (Type 3). Copied as they were, each made highdicom refuse to build the SR and the key
    images (ValueError), so that study never got an answer."""
    changes = {}
    for keyword, clean in CLEANERS.items():
        if keyword in header and header[keyword].value not in (None, ""):
            raw = str(header[keyword].value)
            fixed = clean(raw)
            if fixed != raw:
                changes[keyword] = fixed
    for keyword in DS_KEYWORDS:  # Type 3 numbers: '1,75' (a decimal comma) read as 1.75, 'abc' left out
        if keyword in header:
            raw = header.get_item(keyword).value
            text = (raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw or "")).strip()
            try:
                number = float(text.replace(",", ".")) if text else None
            except ValueError:
                number = None
            if number is None or not math.isfinite(number):
                changes[keyword] = None
            elif text != str(raw).strip() or "," in text or isinstance(raw, bytes):
                changes[keyword] = f"{number:.6g}"
    if not changes:
        return header
    out = copy.deepcopy(header)
    for keyword, value in changes.items():
        if value is None:
            del out[keyword]
        else:
            setattr(out, keyword, value)
    return out


DS_KEYWORDS = ("PatientWeight", "PatientSize")


# Patient and general study attributes a result copies from its source (so it files into the same study).
PATIENT_STUDY_KEYWORDS = (
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "OtherPatientIDsSequence", "PatientAge", "PatientWeight", "PatientSize", "StudyInstanceUID", "StudyDate",
    "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "IssuerOfAccessionNumberSequence",
    "StudyDescription",
)
