"""Boxes are checked in the one writer (``save_box``/``check_box``) whoever calls it: the API, proposals and
crop-table imports. Numbers only, min <= max, the box meets the volume, sides <= the maximum, versions whole."""
from __future__ import annotations

import io

import numpy as np
import pytest

from annotations.models import CropBox, Volume
from annotations.services.boxes import BoxInvalid, check_box, redo_box, restore_box, save_box, undo_box
from annotations.services.crop_tables import import_original
from tests.factories import make_dataset, make_series

pytestmark = pytest.mark.django_db

# a 20 x 32 x 32 volume at 2 mm in-plane, 3 mm slices: x, y 0..62 mm, z 0..57 mm
AFFINE = [[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]]


@pytest.fixture
def series():
    s = make_series(make_dataset("boxes"))
    Volume.objects.create(series=s, file="volumes/none.nii.gz", shape=[20, 32, 32], spacing_mm=[2.0, 2.0, 3.0],
                          affine=AFFINE)
    return s


GOOD_MIN, GOOD_MAX = [10.0, 10.0, 10.0], [40.0, 40.0, 40.0]


@pytest.mark.parametrize("lps_min,lps_max,field,words", [
    ("123", GOOD_MAX, "lps_min", "not str"),                      # "123" is not [1, 2, 3]
    ([True, 10, 10], GOOD_MAX, "lps_min", "bool"),                # true is not 1
    (["10", "10", "10"], GOOD_MAX, "lps_min", "str"),
    ({"x": 1, "y": 2, "z": 3}, GOOD_MAX, "lps_min", "dict"),
    ([10, 10], GOOD_MAX, "lps_min", "got 2"),
    ([[10], [10], [10]], GOOD_MAX, "lps_min", "list"),
    (GOOD_MIN, [40, 40, float("nan")], "lps_max", "finite"),
    (GOOD_MIN, [40, 40, float("inf")], "lps_max", "finite"),
    (GOOD_MIN, [40, 40, 10**400], "lps_max", "finite"),
    (GOOD_MIN, [40, 40, 10**30], "lps_max", "at most"),
    (GOOD_MIN, [5, 40, 40], "lps_max", "below"),                  # min > max
    ([0, 0, -50_000], [60, 60, 50_000], "lps_max", "at most"),    # 100 m of z
    ([1000, 1000, 1000], [1100, 1100, 1100], "lps_min", "does not meet the volume"),
    (None, GOOD_MAX, "lps_min", "NoneType"),
])
def test_bad_boxes_are_refused_naming_the_field(series, lps_min, lps_max, field, words):
    with pytest.raises(BoxInvalid) as info:
        check_box(series, lps_min, lps_max)
    assert info.value.field == field and words in str(info.value), str(info.value)
    with pytest.raises(BoxInvalid):
        save_box(series, "R", lps_min, lps_max)
    assert not CropBox.objects.filter(series=series).exists()


def test_a_box_dragged_past_the_scans_end_is_judged_by_its_part_inside(series, settings):
    """A box dragged 150 mm past a 57 mm slab (210 mm of z as drawn) was refused as over the 200 mm limit and
    vanished from the viewer; it is the part the scan holds that is stored and measured. Inside the scan, a side
    over the limit is still refused, and so is one no body could give."""
    box = save_box(series, "R", [10, 10, -150], [40, 40, 60])
    assert box.lps_min == [10.0, 10.0, -1.5] and box.lps_max == [40.0, 40.0, 58.5]
    settings.ADRENAL_MAX_BOX_SIDE_MM = 40
    with pytest.raises(BoxInvalid, match="the z side is 60.0 mm within the scan; sides are at most 40 mm"):
        check_box(series, [10, 10, -150], [40, 40, 60])
    with pytest.raises(BoxInvalid, match="the z side is 5000.0 mm; sides are at most 40 mm"):
        check_box(series, [10, 10, -4950], [40, 40, 50])


def test_an_absurd_side_is_named_in_few_digits(series):
    """A box of [-1e300]*3..[1e300]*3 was refused as 'the x side is 2000000000...0.0 mm' (301 digits, the API's
    answer to a fuzzer's box, probe R); a side past a kilometre is named in powers of ten."""
    with pytest.raises(BoxInvalid) as info:
        check_box(series, [-1e300] * 3, [1e300] * 3)
    assert str(info.value) == "lps_max: the x side is 2e+300 mm; sides are at most 200 mm"


def test_numbers_of_any_real_kind_are_boxes(series):
    box = save_box(series, "R", np.array([10.0, 10.0, 10.0]), (np.float32(40), 40, np.int64(40)))
    assert box.lps_min == [10.0, 10.0, 10.0] and box.lps_max == [40.0, 40.0, 40.0]


@pytest.mark.parametrize("version", [True, 5.9, 1.0, "1", -1, [1]])
def test_versions_are_whole_numbers(series, version):
    save_box(series, "R", GOOD_MIN, GOOD_MAX, expected_version=0)
    save_box(series, "R", [12, 12, 12], GOOD_MAX, expected_version=1)
    for call in (lambda: save_box(series, "R", GOOD_MIN, GOOD_MAX, expected_version=version),
                 lambda: undo_box(series, "R", expected_version=version),
                 lambda: redo_box(series, "R", expected_version=version),
                 lambda: restore_box(series, "R", version, expected_version=2),
                 lambda: restore_box(series, "R", 1, expected_version=version)):
        with pytest.raises(BoxInvalid):
            call()
    assert CropBox.objects.get(series=series, side="R").version == 2


HEADER = "filename_nii,adrenal_LR,crop_x_min,crop_x_max,crop_y_min,crop_y_max,crop_z_min,crop_z_max\n"


@pytest.mark.parametrize("cells,words", [
    ("5.9,20,5,20,2,10", "crop_x_min must be a whole number"),
    ("abc,20,5,20,2,10", "crop_x_min must be a whole number"),
    ("nan,20,5,20,2,10", "crop_x_min must be a whole number"),
    ("1e400,20,5,20,2,10", "crop_x_min must be a whole number"),
    ("5,20,5,20,2,1e30", "crop_z_max must be a whole number"),
    ("5,20,5,20,2,19", None),  # fits: imported
])
def test_crop_table_cells_are_whole_numbers(series, cells, words):
    name = f"{series.series_uid}.nii.gz"
    result = import_original(io.StringIO(HEADER + f"{name},R,{cells}\n"), type(series).objects.filter(pk=series.pk))
    if words is None:
        assert len(result.imported) == 1 and not result.failed
    else:
        assert not result.imported and words in result.failed[0]["reason"], result.failed


def test_a_box_drawn_past_the_scan_is_cut_to_what_was_scanned(series):
    """Voxel cells run -1..63 mm in x and y and -1.5..58.5 mm in z; a box drawn 50 mm past the first and last
    slice keeps only the scanned part, as a proposed box does."""
    box = save_box(series, "R", [10.0, -30.0, -50.0], [40.0, 40.0, 110.0])
    assert list(box.lps_min) == [10.0, -1.0, -1.5] and list(box.lps_max) == [40.0, 40.0, 58.5]
    assert list(check_box(series, GOOD_MIN, GOOD_MAX).lps_max) == GOOD_MAX  # a box inside is unchanged
