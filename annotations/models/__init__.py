"""Models of the study store and its annotations."""
from .boxes import CropBox, CropBoxVersion
from .datasets import Dataset, Patient, Study
from .imaging import Series, SourceInstance, Volume
from .imports import ImportItem, ImportReport
from .labels import Label

__all__ = [
    "CropBox",
    "CropBoxVersion",
    "Dataset",
    "ImportItem",
    "ImportReport",
    "Label",
    "Patient",
    "Series",
    "SourceInstance",
    "Study",
    "Volume",
]
