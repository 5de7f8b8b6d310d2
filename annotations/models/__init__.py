"""Models of the study store and its annotations."""
from .boxes import CropBox, CropBoxVersion
from .datasets import Dataset, Patient, Study
from .findings import Gland, SideFinding, SideFindingVersion
from .imaging import Series, SourceInstance, Volume, dataset_of_series, split_notes
from .imports import ImportItem, ImportReport
from .labels import Label

__all__ = [
    "CropBox",
    "CropBoxVersion",
    "Dataset",
    "Gland",
    "ImportItem",
    "ImportReport",
    "Label",
    "Patient",
    "Series",
    "SideFinding",
    "SideFindingVersion",
    "SourceInstance",
    "Study",
    "Volume",
    "dataset_of_series",
    "split_notes",
]
