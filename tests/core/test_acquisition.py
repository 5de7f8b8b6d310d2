"""The voxel-size range a model was trained on, and the cautions a verdict outside it carries."""
from __future__ import annotations

import pytest

from inference.ml.acquisition import acquisition_cautions, acquisition_range, contrast_of


def test_range_takes_the_coarser_in_plane_spacing_and_the_slices():
    r = acquisition_range([(0.7, 0.7, 3.0), (0.8, 0.9, 5.0), (0.6, 0.6, 1.0)])
    assert r == {"pixel_mm": [0.6, 0.9], "slice_mm": [1.0, 5.0], "scans": 3,
                 "contrast": {"recorded": 0, "none": 0, "unknown": 0}}
    assert acquisition_range([]) is None
    with pytest.raises(ValueError, match="three positive millimetre values"):
        acquisition_range([(0.7, 0.0, 3.0)])


def test_a_scan_outside_the_range_gets_a_caution_naming_what_and_by_how_much():
    trained = {"pixel_mm": [0.6, 0.95], "slice_mm": [1.0, 5.0], "scans": 32}
    assert acquisition_cautions((0.8, 0.8, 3.0), trained) == []
    assert acquisition_cautions((1.15, 1.15, 6.0), trained) == []          # within 25% of the range
    coarse = acquisition_cautions((3.0, 3.0, 3.0), trained)
    assert len(coarse) == 1 and coarse[0].startswith("pixel spacing 3.00 mm is coarser than the model's training "
                                                     "scans (0.60-0.95 mm, 32 scans)")
    both = acquisition_cautions((0.3, 0.3, 10.0), trained)
    assert [c.split(" mm is ")[0] for c in both] == ["pixel spacing 0.30", "slice spacing 10.00"]
    assert "finer" in both[0] and "coarser" in both[1]
    assert acquisition_cautions((3.0, 3.0, 3.0), None) == []               # a run without a recorded range


def test_contrast_as_the_headers_record_it_and_a_caution_when_no_training_scan_was_like_it():
    assert [contrast_of(a, d) for a, d in (("IODINATED", True), ("  ", True), ("", False), (None, True))] == \
        [True, False, None, False]  # only a DICOM header can tell; an empty ContrastBolusAgent records none
    spacings = [(0.7, 0.7, 3.0)] * 3
    r = acquisition_range(spacings, [False, False, False])
    assert r["contrast"] == {"recorded": 0, "none": 3, "unknown": 0}
    enhanced = acquisition_cautions((0.7, 0.7, 3.0), r, contrast=True)
    assert enhanced == ["the scan's header records a contrast agent and none of the model's 3 training scans did: "
                        "the model was not validated on contrast-enhanced scans, so this verdict is less certain"]
    assert acquisition_cautions((0.7, 0.7, 3.0), r, contrast=False) == []
    assert acquisition_cautions((0.7, 0.7, 3.0), r, contrast=None) == []   # a NIfTI: nothing to compare
    all_enhanced = acquisition_range(spacings, [True, True, True])
    plain = acquisition_cautions((3.0, 3.0, 3.0), all_enhanced, contrast=False)
    assert len(plain) == 2 and plain[1].startswith("the scan's header records no contrast agent and all of the "
                                                   "model's 3 training scans did")
    mixed = acquisition_range(spacings, [True, False, None])  # some training scans of unknown contrast: no claim
    assert acquisition_cautions((0.7, 0.7, 3.0), mixed, contrast=True) == []
    assert acquisition_cautions((0.7, 0.7, 3.0), acquisition_range(spacings, [True, None, True]),
                                contrast=False) == []
