"""Key images as DICOM Secondary Capture (highdicom ``SCImage``), filed in the source study: RGB, the boxes and
captions burned in (``BurnedInAnnotation`` YES, no patient identifiers drawn), referencing the nearest source
instance."""
from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset

from .findings import RESEARCH_STATEMENT, SourceSeries
from .key_images import KeyImage

SERIES_DESCRIPTION = "Adrenal CT AI key images (research tool, not for diagnosis)"


def build_key_image(source: SourceSeries, image: KeyImage, *, sop_instance_uid: str, series_instance_uid: str,
                    instance_number: int, manufacturer: str = "adrenal-ct", series_number: int = 9902) -> Dataset:
    """A Secondary Capture of ``image`` in ``source``'s study (patient and study attributes copied from its
    header); orientation ``L\\P`` (columns towards the patient's left, rows posterior), pixel spacing in mm."""
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source.header, pixel_array=image.rgb, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=series_instance_uid, series_number=series_number,
        sop_instance_uid=sop_instance_uid, instance_number=instance_number, manufacturer=manufacturer,
        pixel_spacing=(round(image.spacing_mm, 6), round(image.spacing_mm, 6)), patient_orientation=("L", "P"),
        transfer_syntax_uid=hd.UID("1.2.840.10008.1.2.1"),
    )
    sc.SeriesDescription = SERIES_DESCRIPTION
    sc.BurnedInAnnotation = "YES"
    sc.BodyPartExamined = "ABDOMEN"  # an unpaired part: both glands on one image, so no Laterality
    sc.ConversionType = "WSD"  # made on a workstation from the source images
    sc.ImageComments = f"Axial slice at z = {image.z_mm:.1f} mm (LPS) with the crop boxes. {RESEARCH_STATEMENT}"[:10240]
    sc.DerivationDescription = "Resampled axial plane of the source series, windowed 40/400 HU, boxes drawn"
    sc.ImageType = ["DERIVED", "SECONDARY"]
    nearest = source.nearest(image.z_mm)
    if nearest is not None:
        ref = Dataset()
        ref.ReferencedSOPClassUID = nearest.sop_class_uid
        ref.ReferencedSOPInstanceUID = nearest.sop_instance_uid
        sc.SourceImageSequence = [ref]
    return sc
