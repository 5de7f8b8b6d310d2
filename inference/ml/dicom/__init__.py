"""Django-free DICOM/NIfTI reading: scan files, read headers, group series, exclude, decode to HU volumes.

Pipeline: ``scan_files`` -> ``read_header`` per file -> ``group_series`` -> ``exclusion_reason`` per group
-> ``load_series`` (decode, sort along the slice normal, check spacing/tilt, resample or refuse) -> ``Volume``.
NIfTI files are the second entry point: ``read_nifti_entry`` (put on the store's canonical axes, as DICOM).
"""
from .grouping import SeriesGroup, group_series
from .headers import InstanceHeader, NotDicom, read_header
from .exclusion import MIN_SLICES, exclusion_reason
from .folder import load_folder
from .nifti import NiftiEntry, is_nifti, load_nifti_entry, read_nifti_entry
from .scan import scan_files
from .stack import LoadedSeries, SeriesError, load_series

__all__ = [
    "MIN_SLICES",
    "InstanceHeader",
    "LoadedSeries",
    "NiftiEntry",
    "NotDicom",
    "SeriesError",
    "SeriesGroup",
    "exclusion_reason",
    "group_series",
    "is_nifti",
    "load_folder",
    "load_nifti_entry",
    "load_series",
    "read_nifti_entry",
    "read_header",
    "scan_files",
]
