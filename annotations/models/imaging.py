"""CT series with the metadata the original study indexed, their HU volumes and source instances."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from .datasets import Dataset, Study


class SeriesQuerySet(models.QuerySet):
    def visible_to(self, user) -> SeriesQuerySet:
        """Series of the datasets ``user`` may see, and those ``user`` submitted for a verdict
        (``Series.submitted_by``: a submitter can always open what they submitted)."""
        in_datasets = self.filter(study__patient__dataset__in=Dataset.objects.visible_to(user))
        if not getattr(user, "is_authenticated", False):
            return in_datasets
        mine = Series.submitted_by.through.objects.filter(user=user).values("series_id")
        return self.filter(models.Q(pk__in=in_datasets.values("pk")) | models.Q(pk__in=mine))


class Series(models.Model):
    """One CT series. Series with ``is_scan`` set are the dataset's scans (boxes, images, verdicts)."""

    class BoxStatus(models.TextChoices):
        NONE = "none", "no box"
        PROPOSED = "proposed"
        CONFIRMED = "confirmed"
        NOT_COVERED = "not_covered", "adrenal region not covered"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    series_uid = models.CharField(max_length=128, db_index=True)
    uid_source = models.CharField(
        max_length=32, default="dicom", help_text="dicom, or the fallback key used when the UID was blank"
    )
    is_scan = models.BooleanField(default=True)
    box_status = models.CharField(max_length=16, choices=BoxStatus.choices, default=BoxStatus.NONE, db_index=True)
    box_status_reason = models.CharField(max_length=300, blank=True)
    uncovered_sides = models.JSONField(
        default=dict, blank=True,
        help_text='sides whose gland the proposer found outside the field of view, with what is missing: '
                  '{"L": "the left adrenal\'s expected place ... is outside the field of view"}; a box drawn '
                  'on such a side removes it')
    # indexed DICOM metadata
    modality = models.CharField(max_length=16, blank=True)
    image_type = models.CharField(max_length=200, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    series_description = models.CharField(max_length=200, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    slice_thickness_mm = models.FloatField(null=True, blank=True)
    slice_spacing_mm = models.FloatField(null=True, blank=True)
    pixel_spacing_mm = models.JSONField(null=True, blank=True, help_text="[row, column] mm")
    orientation = models.JSONField(null=True, blank=True, help_text="ImageOrientationPatient")
    convolution_kernel = models.CharField(max_length=64, blank=True)
    kvp = models.FloatField(null=True, blank=True)
    exposure_mas = models.FloatField(null=True, blank=True)
    contrast_agent = models.CharField(max_length=200, blank=True)
    contrast_timing = models.CharField(max_length=64, blank=True)
    manufacturer = models.CharField(max_length=100, blank=True)
    model_name = models.CharField(max_length=100, blank=True)
    series_date = models.DateField(null=True, blank=True)
    series_time = models.CharField(max_length=32, blank=True)
    instance_count = models.PositiveIntegerField(default=0)
    transfer_syntax = models.CharField(max_length=64, blank=True)
    extra = models.JSONField(default=dict, blank=True)
    submitted_by = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="submitted_series",
        help_text="Users who submitted this scan for a verdict: they may open it whatever datasets they are in")
    created_at = models.DateTimeField(default=timezone.now)

    objects = SeriesQuerySet.as_manager()

    class Meta:
        ordering = ["study", "series_number", "id"]
        verbose_name_plural = "series"
        constraints = [models.UniqueConstraint(fields=["study", "series_uid"], name="uniq_series_uid")]

    def __str__(self) -> str:
        return f"{self.study.patient} / {self.series_description or self.series_uid}"

    @property
    def patient(self):
        return self.study.patient

    @property
    def dicom_series_uid(self) -> str:
        """The DICOM SeriesInstanceUID: ``series_uid`` less the ``#<part>`` that each part of a series the import
        split (passes, phases, stacks: ``<uid>#acq2``) carries."""
        return self.series_uid.split("#", 1)[0]

    @property
    def is_part(self) -> bool:
        """One part of a DICOM series the import split (``series_uid`` is ``<uid>#<part>``)."""
        return "#" in self.series_uid

    @property
    def dataset(self):
        return self.study.patient.dataset

    @property
    def label(self) -> str | None:
        """The series' own label override, else its patient's."""
        override = self.labels.filter(is_current=True).first()
        return override.value if override else self.study.patient.label


class Volume(models.Model):
    """The series as a regular-grid HU volume: int16 NIfTI, voxel (i, j, k) -> LPS mm by ``affine``."""

    series = models.OneToOneField(Series, on_delete=models.CASCADE, related_name="volume")
    file = models.FileField(upload_to="volumes/", max_length=300)
    shape = models.JSONField(help_text="[k, j, i]: slices, rows, columns")
    spacing_mm = models.JSONField(help_text="[i, j, k] spacing in mm: column, row, slice")
    affine = models.JSONField(help_text="4x4 voxel (i, j, k) -> LPS mm")
    resampled = models.BooleanField(default=False, help_text="Irregular spacing or tilt was resampled")
    notes = models.TextField(blank=True, help_text="What import did or found (reorientation, qform/sform, gantry "
                             "tilt, missing or uneven slices, passes), '; '-joined; kept whole")
    preview = models.FileField(upload_to="previews/", max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"volume of {self.series_id} {self.shape}"

    @property
    def note_list(self) -> list[str]:
        """``notes`` one note apiece (see ``split_notes``)."""
        return split_notes(self.notes)


def split_notes(notes: str | None) -> list[str]:
    """A volume's ``"; "``-joined notes as a list, one note apiece. A ``"; "`` inside a pair of parentheses belongs
    to its note (``"put on the store's LPS axes (flipped i; no interpolation)"`` is one note); a parenthesis left
    open (a note cut short with "...") holds nothing together."""
    text = notes or ""
    inside = [0] * (len(text) + 1)  # +1 at each matched "(", -1 after its ")": a running sum > 0 is inside
    opened = []
    for n, ch in enumerate(text):
        if ch == "(":
            opened.append(n)
        elif ch == ")" and opened:
            inside[opened.pop()] += 1
            inside[n + 1] -= 1
    out, depth, start = [], 0, 0
    for n, ch in enumerate(text):
        depth += inside[n]
        if ch == ";" and depth == 0 and text[n + 1:n + 2] == " ":
            out.append(text[start:n])
            start = n + 2
    out.append(text[start:])
    return [s.strip() for s in out if s.strip()]


class SourceInstance(models.Model):
    """One imported DICOM instance (or NIfTI file), keyed so a re-import adds nothing."""

    dataset = models.ForeignKey("annotations.Dataset", on_delete=models.CASCADE, related_name="instances")
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances", null=True, blank=True)
    key = models.CharField(max_length=200, help_text="SOP Instance UID, or its documented fallback")
    path = models.CharField(max_length=1000)
    sha1 = models.CharField(max_length=40, blank=True, default="", help_text=(
        "SHA-1 of the file's bytes: an upload for a verdict shares this scan with a user who may not see it only "
        "when it holds every instance of the scan byte for byte (empty for instances imported before it was kept)"))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "key"], name="uniq_instance_key")]


def dataset_of_series(series_ids) -> int | None:
    """The dataset id of the first of ``series_ids`` (the dataset a job over those scans works on), or None."""
    ids = list(series_ids or [])
    if not ids:
        return None
    return Series.objects.filter(pk__in=ids).order_by("pk").values_list("study__patient__dataset_id", flat=True).first()
