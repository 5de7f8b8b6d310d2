"""DICOM objects that carry a verdict back to the PACS (Django-free): what a report says (``findings``),
key images of flagged slices with the crop boxes drawn in (``key_images``), the TID 1500 Structured Report
(``sr``) and the Secondary Capture images (``sc``), all built with highdicom from the source series' headers."""
from .findings import Findings, ModelInfo, SideFinding, SourceImage, SourceSeries
from .key_images import KeyImage, render_axial
from .sc import build_key_image
from .sr import build_report, read_report

__all__ = ["Findings", "KeyImage", "ModelInfo", "SideFinding", "SourceImage", "SourceSeries", "build_key_image",
           "build_report", "read_report", "render_axial"]
