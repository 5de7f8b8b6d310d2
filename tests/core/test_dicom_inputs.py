"""Real-world DICOM and NIfTI inputs that once gave wrong HU, lost data or cost the worker gigabytes, each
made from the real TotalSegmentator JPEG 2000 series (20 slices, 512x512) written out in another form: a
header claiming more frames than its file holds, stored values that are not HU (RescaleType), pixel padding,
two images sharing one SOP Instance UID, patient names in ISO 2022 character sets going back to the PACS, and
scaled NIfTI data read at the cost of an int16 volume."""
from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from inference.ml.dicom import group_series, load_series, read_header, scan_files
from inference.ml.dicom.headers import BadHeader
from inference.ml.dicom.spacing import SeriesError

AIR = -1024


@pytest.fixture(scope="module")
def real_series(realct, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """The real series decompressed to explicit VR little endian (so headers and pixels can be edited), with
    the HU volume and affine it loads to."""
    folder = tmp_path_factory.mktemp("real_ele")
    for p in sorted(realct["example_ct_dicom"].iterdir()):
        ds = pydicom.dcmread(p)
        ds.decompress()
        ds.save_as(folder / f"{p.name}.dcm", enforce_file_format=True)
    volume = _load(folder).volume
    return folder, volume.array, volume.affine


def _groups(folder: Path):
    return group_series([read_header(p) for p in scan_files(folder)], folder)


def _load(folder: Path):
    groups = _groups(folder)
    assert len(groups) == 1, [g.describe() for g in groups]
    return load_series(groups[0])


def _edited(src: Path, dst: Path, edit) -> Path:
    """A copy of the series with ``edit(ds, index)`` applied to every file (sorted by name = by position)."""
    dst.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(sorted(src.iterdir())):
        ds = pydicom.dcmread(p)
        edit(ds, i)
        ds.save_as(dst / p.name)
    return dst


# -- a header's frame count is checked before frames are listed ----------------------------------------------
@pytest.mark.parametrize("frames", [50_000_000, 700])
def test_a_frame_count_the_file_cannot_hold_fails_that_file_fast(real_series, tmp_path, frames):
    src, expected, _ = real_series

    def edit(ds, i):
        if i == 5:
            ds.NumberOfFrames = frames

    folder = _edited(src, tmp_path / "s", edit)
    bad = sorted(folder.iterdir())[5]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BadHeader, match="NumberOfFrames"):
        read_header(bad)
    # 50 million frames listed one by one took 6 GB and 78 s; refused from the header, nothing grows
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KB
    good = [read_header(p) for p in sorted(folder.iterdir()) if p != bad]
    loaded = load_series(group_series(good, folder)[0])  # the rest of the series goes on without it
    assert loaded.volume.shape == expected.shape and "one missing slice" in loaded.notes


def test_enhanced_ct_frame_count_and_per_frame_geometry_are_checked(real_series, tmp_path):
    import highdicom as hd

    src, expected, affine = real_series
    legacy = []
    for p in sorted(src.iterdir()):
        ds = pydicom.dcmread(p)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID  # blank in the anonymised series
        legacy.append(ds)
    mf = hd.legacy.LegacyConvertedEnhancedCTImage(legacy_datasets=legacy, series_instance_uid=hd.UID(),
                                                  series_number=9, sop_instance_uid=hd.UID(), instance_number=1)
    (tmp_path / "ok").mkdir()
    mf.save_as(tmp_path / "ok" / "mf.dcm")
    loaded = _load(tmp_path / "ok")
    assert np.array_equal(loaded.volume.array, expected)
    np.testing.assert_allclose(loaded.volume.affine, affine, atol=1e-4)
    mf.NumberOfFrames = 700
    (tmp_path / "bad").mkdir()
    mf.save_as(tmp_path / "bad" / "mf.dcm")
    with pytest.raises(BadHeader, match="NumberOfFrames 700 but 20 per-frame functional group"):
        read_header(tmp_path / "bad" / "mf.dcm")
    mf.NumberOfFrames = 20
    # a frame of another plane or pixel size was stacked as an axial slice of the first frame's size
    for f, group, keyword, value in ((5, "PlaneOrientationSequence", "ImageOrientationPatient", [1, 0, 0, 0, 0, -1]),
                                     (7, "PixelMeasuresSequence", "PixelSpacing", [2.0, 2.0])):
        odd = pydicom.Dataset()
        setattr(odd, keyword, value)
        saved = mf.PerFrameFunctionalGroupsSequence[f].get(group)
        setattr(mf.PerFrameFunctionalGroupsSequence[f], group, [odd])
        mf.save_as(tmp_path / "bad" / "mf.dcm")
        with pytest.raises(BadHeader, match=rf"frame {f + 1} of 20 has another {keyword} .* than frame 1"):
            read_header(tmp_path / "bad" / "mf.dcm")
        if saved is None:
            del mf.PerFrameFunctionalGroupsSequence[f][group]
        else:
            setattr(mf.PerFrameFunctionalGroupsSequence[f], group, saved)


@pytest.mark.parametrize("keyword", ["TemporalPositionIndex", "StackID"])
def test_phases_or_stacks_inside_one_multi_frame_image_are_refused(real_series, tmp_path, keyword):
    """Two phases interleaved in one Enhanced CT file (frames told apart by TemporalPositionIndex, or two stacks
    by StackID) were stacked as one volume whose slices alternate between them; the file is refused naming
    the attribute and its values."""
    import highdicom as hd

    src, _, _ = real_series
    legacy = []
    for p in sorted(src.iterdir()):
        ds = pydicom.dcmread(p)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        legacy.append(ds)
    mf = hd.legacy.LegacyConvertedEnhancedCTImage(legacy_datasets=legacy, series_instance_uid=hd.UID(),
                                                  series_number=9, sop_instance_uid=hd.UID(), instance_number=1)
    for f, item in enumerate(mf.PerFrameFunctionalGroupsSequence):
        content = pydicom.Dataset()
        setattr(content, keyword, 1 + f % 2 if keyword == "TemporalPositionIndex" else str(1 + f % 2))
        item.FrameContentSequence = [content]
    mf.save_as(tmp_path / "mf.dcm")
    with pytest.raises(BadHeader, match=rf"the 20 frames of this multi-frame image belong to 2 {keyword} values "
                                        r"\(1, 2\): several (phases|stacks) in one file"):
        read_header(tmp_path / "mf.dcm")


# -- values that are not HU are not stored as HU -------------------------------------------------------------
@pytest.mark.parametrize("mode", ["+ee", "+eb"])  # JPEG extended 12-bit, JPEG baseline 8-bit
def test_a_lossy_dcmtk_copy_whose_values_are_not_hu_is_skipped_naming_rescale_type(real_series, tmp_path, mode):
    """dcmcjpeg's lossy modes rescale the CT's values into the JPEG's range and write RescaleType US with
    intercept 0: stored as HU they were 1024-2065 HU off (air at about +1000); now the series is skipped saying
    why. A lossless copy (JPEG-LS near-lossless within 2 HU) stays HU."""
    from inference.ml.dicom import exclusion_reason

    src, _, _ = real_series
    out = tmp_path / "lossy"
    out.mkdir()
    for p in sorted(src.iterdir()):
        subprocess.run(["dcmcjpeg", mode, str(p), str(out / p.name)], check=True, capture_output=True)
    assert pydicom.dcmread(next(out.iterdir()), stop_before_pixels=True).RescaleType == "US"
    (group,) = _groups(out)
    reason = exclusion_reason(group)
    assert reason and reason.startswith("stored values are not Hounsfield units (RescaleType US)"), reason
    near = tmp_path / "jls"
    near.mkdir()
    for p in sorted(src.iterdir()):
        subprocess.run(["dcmcjpls", "+en", str(p), str(near / p.name)], check=True, capture_output=True)
    (group,) = _groups(near)
    assert exclusion_reason(group) is None
    assert np.abs(load_series(group).volume.array.astype(int) - real_series[1]).max() <= 2


# -- pixel padding is air ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("signed, padding, bits_stored", [(False, 0xF830, 16), (True, -2000, 16), (False, 0xF830, 12)])
def test_pixel_padding_is_stored_as_air_and_noted(real_series, tmp_path, signed, padding, bits_stored):
    """Outside the reconstruction circle scanners store PixelPaddingValue: unsigned 0xF830 became +32767 HU (a
    white band of 'bone' around the patient), signed -2000 was kept as -2000 HU. Padding is air, noted; every
    other voxel keeps its HU (with BitsStored 12 the value is compared as the decoder cuts it)."""
    src, expected, _ = real_series
    yy, xx = np.mgrid[:512, :512]
    outside = (yy - 255.5) ** 2 + (xx - 255.5) ** 2 > 250 ** 2

    def edit(ds, i):
        stored = ds.pixel_array.astype(np.int32)  # HU + 1024
        if signed:
            stored = stored - 1024
            ds.PixelRepresentation, ds.RescaleIntercept = 1, 0
        stored[outside] = padding
        ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
        ds.add_new(0x00280120, "SS" if signed else "US", padding)
        ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()

    loaded = _load(_edited(src, tmp_path / "s", edit))
    hu = loaded.volume.array
    assert (hu[:, outside] == AIR).all()
    assert np.array_equal(hu[:, ~outside], expected[:, ~outside])
    assert f"{int(outside.sum()) * 20:,} padding pixel(s) (PixelPaddingValue) stored as -1024 HU" in loaded.notes


# -- two images under one SOP Instance UID are two images ---------------------------------------------------------
def _shared_uid(src: Path, dst: Path, *, copy_too: bool = False) -> Path:
    uid = {}

    def edit(ds, i):
        if i == 9:
            uid["v"] = ds.SOPInstanceUID
        if i == 10:  # slice 10, 2 mm from slice 9, given slice 9's UID
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid["v"]

    folder = _edited(src, dst, edit)
    if copy_too:  # and a true copy of slice 9 beside it: that one is a duplicate
        nine = sorted(folder.iterdir())[9]
        (folder / f"zz-copy-{nine.name}").write_bytes(nine.read_bytes())
    return folder


def test_two_images_sharing_a_sop_instance_uid_are_both_kept(real_series, tmp_path):
    """Slice 10 given slice 9's UID was dropped as a 'duplicate' and interpolated from its neighbours (up to
    341 HU off); an image at another position is another image: kept, keyed by its content, noted."""
    src, expected, affine = real_series
    folder = _shared_uid(src, tmp_path / "s", copy_too=True)
    (group,) = _groups(folder)
    assert len(group.instances) == 20 and len(group.duplicates) == 1
    assert group.duplicates[0][0].path.name.startswith("zz-copy-")
    assert len({h.key for h in group.instances}) == 20
    loaded = load_series(group)
    assert np.array_equal(loaded.volume.array, expected) and not loaded.resampled
    np.testing.assert_allclose(loaded.volume.affine, affine, atol=1e-4)
    assert "shares SOP Instance UID" in loaded.notes and "both kept" in loaded.notes


# -- scaled or float NIfTI is read at the cost of its int16 volume ------------------------------------------------
def test_scaled_nifti_is_read_slab_by_slab_with_the_same_hu(realct, tmp_path):
    """The real CT tiled to 512x512x200 and stored as dcm2niix writes unsigned series (uint16, scl_inter -1024)
    and as float32: nibabel gives float64, and converting it whole took about 20 bytes a voxel (3.1 GB for
    512x512x600); slab by slab the reader stays under 8 bytes a voxel (int16 result, its canonical copy, one
    slab) and every voxel keeps its HU."""
    import nibabel as nib

    from inference.ml.dicom.nifti import read_nifti_entry

    ct = nib.load(realct["example_ct"])
    hu = np.asanyarray(ct.dataobj).astype(np.int32)
    big = np.tile(hu, (5, 6, 2))[:512, :512, :200]
    affine = np.diag([0.8, 0.8, 1.5, 1.0])
    paths = {}
    for kind in ("uint16", "float32"):
        data = (big + 1024).clip(0, 4095).astype(np.uint16) if kind == "uint16" else big.astype(np.float32) + 0.25
        img = nib.Nifti1Image(data, affine)
        img.set_qform(affine, 1)
        img.set_sform(affine, 1)
        if kind == "uint16":
            img.header.set_slope_inter(1.0, -1024.0)
        paths[kind] = tmp_path / f"{kind}.nii.gz"
        nib.save(img, paths[kind])
    def canonical(values: np.ndarray) -> np.ndarray:  # what the store holds for an int16 file of these values
        img = nib.Nifti1Image(values.astype(np.int16), affine)
        img.set_qform(affine, 1)
        img.set_sform(affine, 1)
        nib.save(img, tmp_path / "int16.nii.gz")
        return read_nifti_entry(tmp_path / "int16.nii.gz").volume.array

    expected = {"uint16": canonical(np.clip(big, -1024, 3071)),
                "float32": canonical(np.rint(big.astype(np.float32) + 0.25))}
    for kind, path in paths.items():
        script = (  # VmHWM: this process' peak (ru_maxrss would carry pytest's own across the exec)
            "import numpy as np\n"
            "from inference.ml.dicom.nifti import read_nifti_entry\n"
            "def peak():\n"
            "    line = [x for x in open('/proc/self/status') if x.startswith('VmHWM')][0]\n"
            "    return int(line.split()[1])\n"
            "before = peak()\n"
            f"e = read_nifti_entry({str(path)!r})\n"
            "grown = peak() - before\n"
            f"np.save({str(tmp_path / kind)!r} + '.npy', e.volume.array)\n"
            "print(grown * 1024 / e.volume.array.size)\n"
        )
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[2])
        bytes_per_voxel = float(out.stdout.strip().splitlines()[-1])
        assert bytes_per_voxel < 8, (kind, bytes_per_voxel)
        got = np.load(tmp_path / f"{kind}.npy")
        assert np.array_equal(got, expected[kind]), kind


# -- a file that starts at "DICM" ----------------------------------------------------------------------------------
def test_files_that_start_at_dicm_without_the_preamble_are_read(realct, real_series, tmp_path):
    """Some writers leave the 128-byte preamble out and start at the "DICM" prefix: every such file was 'not a
    DICOM file (no DICOM preamble and no image tags)'. Read as if the preamble were there, the real JPEG 2000
    series gives the same volume."""
    _, expected, affine = real_series
    folder = tmp_path / "nopreamble"
    folder.mkdir()
    for p in sorted(realct["example_ct_dicom"].iterdir()):
        data = p.read_bytes()
        assert data[128:132] == b"DICM"
        (folder / p.name).write_bytes(data[128:])
    loaded = _load(folder)
    assert np.array_equal(loaded.volume.array, expected)
    np.testing.assert_allclose(loaded.volume.affine, affine, atol=1e-4)


# -- a file cut short says so ----------------------------------------------------------------------------------------
def test_files_cut_short_are_named_as_truncated(realct, tmp_path):
    """pydicom stops quietly where a file ends: one cut after its file meta was grouped as a series of its own and
    skipped as 'non-CT modality (none)', one cut inside its JPEG 2000 data failed its series with 'cannot decode
    pixel data (AttributeError: The dataset has no 'Pixel Data' ...)'. Both now say the file ends early."""
    from inference.ml.dicom import SeriesError

    src = sorted(realct["example_ct_dicom"].iterdir())
    folder = tmp_path / "s"
    folder.mkdir()
    for i, p in enumerate(src):
        data = p.read_bytes()
        (folder / p.name).write_bytes(data[:300] if i == 3 else data[:-20_000] if i == 7 else data)
    with pytest.raises(BadHeader, match=r"no data set after the file meta: the file ends at byte 300 \(truncated\?\)"):
        read_header(folder / src[3].name)
    headers = [read_header(p) for p in sorted(folder.iterdir()) if p.name != src[3].name]
    (group,) = group_series(headers, folder)
    with pytest.raises(SeriesError, match=rf"{src[7].name}: no pixel data: the file ends at byte [\d,]+ before its "
                                          r"image \(truncated\?\)"):
        load_series(group)


@pytest.mark.parametrize("cut", [400, 1000, 2000])
def test_a_header_cut_before_the_image_size_is_named_as_truncated(realct, tmp_path, cut):
    """A CT slice cut inside its header (after the file meta, before Rows and Columns) was read as what pydicom
    parsed: without Modality it became a series of its own skipped as 'non-CT modality (none)', with it 'no pixel
    data'. It is a failed file saying where its header stops; in an import the rest of the series goes on."""
    src = sorted(realct["example_ct_dicom"].iterdir())
    folder = tmp_path / "s"
    folder.mkdir()
    for i, p in enumerate(src):
        (folder / p.name).write_bytes(p.read_bytes()[:cut] if i == 5 else p.read_bytes())
    with pytest.raises(BadHeader, match=rf"CT Image Storage without Rows and Columns: the header stops after \w+ "
                                        rf"at byte {cut:,} \(truncated\?\)"):
        read_header(folder / src[5].name)
    headers = [read_header(p) for p in sorted(folder.iterdir()) if p.name != src[5].name]
    (group,) = group_series(headers, folder)
    assert group.frame_count == len(src) - 1


def test_nul_characters_inside_text_values_are_dropped(real_series, tmp_path):
    """A NUL byte inside a text value (a vendor's padding) was kept ('ABD\\x00M'); PostgreSQL refuses NUL in text,
    so the series failed there with 'A string literal cannot contain NUL'. Headers keep text without it."""
    src, _, _ = real_series
    path = tmp_path / "nul.dcm"
    ds = pydicom.dcmread(sorted(src.iterdir())[0])
    ds.SeriesDescription, ds.SeriesInstanceUID = "ABDOMEN", "1.2.3.4"
    ds.save_as(path)
    data = path.read_bytes()
    assert data.count(b"ABDOMEN ") == 1 and data.count(b"1.2.3.4\x00") == 1
    path.write_bytes(data.replace(b"ABDOMEN ", b"ABD\x00M\x00EN").replace(b"1.2.3.4\x00", b"1.2\x00.3.4"))
    header = read_header(path)
    assert header.meta["SeriesDescription"] == "ABDMEN" and header.series_uid == "1.2.3.4"


# -- numbers that are no image plane -----------------------------------------------------------------------------
@pytest.mark.parametrize("keyword, value, shown", [
    ("PixelSpacing", [-0.9765625, -0.9765625], "PixelSpacing -0.976562\\-0.976562 is not two positive numbers"),
    ("PixelSpacing", [0, 0], "PixelSpacing 0\\0 is not two positive numbers"),
    ("ImageOrientationPatient", [0, 0, 0, 0, 0, 0], "ImageOrientationPatient 0\\0\\0\\0\\0\\0 is not two unit, perp"),
    ("ImageOrientationPatient", [2, 0, 0, 0, 2, 0], "ImageOrientationPatient 2\\0\\0\\0\\2\\0 is not two unit, perp"),
    ("ImageOrientationPatient", [1, 0, 0, 1, 0, 0], "ImageOrientationPatient 1\\0\\0\\1\\0\\0 is not two unit, perp"),
])
def test_geometry_numbers_that_are_no_image_plane_are_named(real_series, tmp_path, keyword, value, shown):
    """A negative PixelSpacing was read as flips (the stored image mirrored, left and right swapped), a zero one
    raised 'singular affine' from deep in the stacking, a zero orientation read 'non-axial (slice normal 0.00 0.00
    0.00)' and a doubled one made the scan twice its size in mm. Each is skipped naming the element."""
    from inference.ml.dicom import SeriesError, exclusion_reason

    src, _, _ = real_series
    folder = _edited(src, tmp_path / "s", lambda ds, i: setattr(ds, keyword, value))
    (group,) = _groups(folder)
    assert exclusion_reason(group).startswith(shown) and exclusion_reason(group).endswith(": geometry unknown")
    with pytest.raises(SeriesError, match="geometry unknown"):
        load_series(group)


@pytest.mark.parametrize("kind", ["rgb", "complex"])
def test_rgb_or_complex_nifti_is_refused_as_not_greyscale(realct, tmp_path, kind):
    """An RGB NIfTI failed with 'unreadable NIfTI data (TypeError: ufunc 'isfinite' not supported ...)' and a
    complex one was stored from its real part with no note; both are refused as DICOM RGB 'CT' is."""
    import nibabel as nib

    from inference.ml.dicom.nifti import read_nifti_entry

    ct = nib.load(realct["example_ct_sm"])
    hu = np.asanyarray(ct.dataobj)
    if kind == "rgb":
        data = np.zeros(hu.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        data["R"] = data["G"] = data["B"] = np.clip((hu + 1024) // 16, 0, 255)
    else:
        data = hu.astype(np.complex64)
    img = nib.Nifti1Image(data, ct.affine)
    img.set_qform(ct.affine, 1)
    nib.save(img, tmp_path / f"{kind}.nii.gz")
    with pytest.raises(ValueError, match=r"not a greyscale volume: voxels of type .* \(RGB or complex data hold no HU\)"):
        read_nifti_entry(tmp_path / f"{kind}.nii.gz")


# -- the same series with its rows along y, or prone ------------------------------------------------------------------
@pytest.mark.parametrize("form", ["rows_along_y", "prone", "rows_along_y_prone"])
def test_other_image_orientations_give_the_same_volume_and_say_what_was_done(real_series, tmp_path, form):
    """The real series rewritten with ImageOrientationPatient 0\\1\\0\\1\\0\\0 (rows along y: pixels transposed),
    -1\\0\\0\\0\\-1\\0 (prone: both flipped) and both: the same HU at the same LPS points. The note of the
    transposed ones said only 'put on the store's LPS axes (flipped k; no interpolation)', as if the axes had
    only been flipped; it now says the axes were permuted and how."""
    src, expected, affine = real_series
    folder = tmp_path / form
    folder.mkdir()
    for p in sorted(src.iterdir()):
        ds = pydicom.dcmread(p)
        arr = ds.pixel_array
        row, col = np.asarray(ds.ImageOrientationPatient[:3], float), np.asarray(ds.ImageOrientationPatient[3:], float)
        dr, dc = float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0])  # along a row (column step), down a column
        origin = np.asarray(ds.ImagePositionPatient, float)
        if "prone" in form:  # first pixel at the other corner, both directions reversed
            origin = origin + row * dr * (arr.shape[1] - 1) + col * dc * (arr.shape[0] - 1)
            row, col, arr = -row, -col, arr[::-1, ::-1]
        if "rows_along_y" in form:
            row, col, dr, dc, arr = col, row, dc, dr, arr.T
        ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
        ds.PixelSpacing = [dc, dr]
        ds.ImagePositionPatient = [float(v) for v in origin]
        ds.Rows, ds.Columns = arr.shape
        ds.PixelData = np.ascontiguousarray(arr).tobytes()
        ds.save_as(folder / p.name)
    loaded = _load(folder)
    assert np.array_equal(loaded.volume.array, expected) and not loaded.resampled
    np.testing.assert_allclose(loaded.volume.affine, affine, atol=1e-4)
    note = {"rows_along_y": "axes permuted: the series' i, j, k are the store's j, i, k; flipped k",
            "prone": "flipped i, j",
            "rows_along_y_prone": "axes permuted: the series' i, j, k are the store's j, i, k; flipped i, j, k"}[form]
    assert loaded.notes == f"put on the store's LPS axes ({note}; no interpolation)"


# -- values that cannot be HU ----------------------------------------------------------------------------------------
def test_signed_values_labelled_unsigned_are_refused_naming_the_likely_cause(real_series, realct, tmp_path):
    """The real series' HU written as signed 16-bit values but labelled unsigned (PixelRepresentation 0, intercept
    0), as a converter that loses the sign bit's meaning writes them: every voxel below 0 HU (air, fat, lung)
    decoded near 65 000 and was stored clipped to 32767 HU without a word, so the patient's proposals and verdict
    were those of a white block. It is now refused naming the likely cause; the same for a NIfTI of int16 HU stored
    as uint16. Metal on an extended scale (a few voxels at 30 000 HU) is still imported."""
    import nibabel as nib

    from inference.ml.dicom import SeriesError
    from inference.ml.dicom.nifti import read_nifti_entry

    src, expected, affine = real_series

    def unsigned_label(ds, i):
        hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        ds.PixelData = hu.astype("<i2").tobytes()
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit, ds.RescaleIntercept = 0, 16, 15, 0

    with pytest.raises(SeriesError, match=r"values are not HU: \d+% of the voxels decode above 10000 HU \(max 32767\)"
                                          r", which no CT holds: a signed series labelled unsigned \(PixelRepresentation"
                                          r" 0\), or a wrong RescaleSlope/RescaleIntercept\? \(first image: slope 1, "
                                          r"intercept 0\)"):
        _load(_edited(src, tmp_path / "unsigned", unsigned_label))

    def metal(ds, i):
        ds.BitsStored, ds.HighBit = 16, 15  # the real series stores 12 bits
        if 8 <= i < 12:
            arr = ds.pixel_array.copy()
            arr[250:270, 250:270] = 31000  # 20x20 pixels of 4 slices: 0.03% of the voxels
            ds.PixelData = arr.tobytes()

    loaded = _load(_edited(src, tmp_path / "metal", metal))
    assert int(loaded.volume.array.max()) == 31000 - 1024
    ct = nib.load(realct["example_ct_sm"])
    wrapped = nib.Nifti1Image(np.asanyarray(ct.dataobj).astype(np.int16).view(np.uint16), ct.affine)
    nib.save(wrapped, tmp_path / "wrapped.nii.gz")
    with pytest.raises(ValueError, match=r"values are not HU: .* a signed volume stored as unsigned, or a wrong "
                                         r"scl_slope/scl_inter\? \(file: uint16"):
        read_nifti_entry(tmp_path / "wrapped.nii.gz")


# -- some images of a series stored with the row or column direction reversed ---------------------------------------
def test_images_stored_with_reversed_rows_or_columns_are_flipped_onto_the_series_grid(real_series, tmp_path):
    """The real series with images 5 and 12 stored the other way round (ImageOrientationPatient -1\\0\\0\\0\\-1\\0,
    pixels and position to match: a re-export by a viewer) and image 8 with only its columns reversed: a single
    such image was excluded as 'odd instance ... orientation axial (series: axial)' and its slice interpolated
    (up to 800 HU off), and a series split half and half became two scans of one patient. They are the same plane:
    their pixels are now flipped onto the series' grid, and the volume is the plain series', HU for HU."""
    src, expected, affine = real_series

    def reverse(ds, i):
        if i not in (5, 8, 12):
            return
        arr = ds.pixel_array
        row, col = np.asarray(ds.ImageOrientationPatient[:3], float), np.asarray(ds.ImageOrientationPatient[3:], float)
        dr, dc = float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0])
        origin = np.asarray(ds.ImagePositionPatient, float) + row * dr * (arr.shape[1] - 1)
        row, arr = -row, arr[:, ::-1]
        if i != 8:
            origin, col, arr = origin + col * dc * (arr.shape[0] - 1), -col, arr[::-1, :]
        ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
        ds.ImagePositionPatient = [float(v) for v in origin]
        ds.PixelData = np.ascontiguousarray(arr).tobytes()

    folder = _edited(src, tmp_path / "reversed", reverse)
    (group,) = _groups(folder)
    assert len(group.instances) == 20 and not group.excluded
    loaded = load_series(group)
    assert np.array_equal(loaded.volume.array, expected) and not loaded.resampled
    np.testing.assert_allclose(loaded.volume.affine, affine, atol=1e-4)
    assert loaded.notes.startswith("3 image(s) stored with the row or column direction reversed "
                                   "(ImageOrientationPatient -1\\0\\0\\0\\-1\\0, e.g. ")
    assert loaded.notes.endswith(") flipped onto the series' grid")


# -- slice positions written to a tenth of a millimetre --------------------------------------------------------------
@pytest.mark.parametrize("step", [1.25, 0.625, 0.75])
def test_slice_positions_written_to_a_tenth_of_a_millimetre_are_one_regular_grid(real_series, tmp_path, step):
    """The real series with its slices 1.25, 0.625 or 0.75 mm apart and ImagePositionPatient written to 0.1 mm (as
    some scanners and converters write it: -123.5, -122.2, -121.0, ...): the steps of 1.2 and 1.3 mm looked like
    two phases interleaved, and one series became two (four for 0.625 mm) scans of the same patient at twice (four
    times) the slice step. It is one regular grid: stacked as is at its mean step, each slice within the rounding
    of its header's position, with a note."""
    src, expected, affine = real_series

    def rounded(ds, i):
        k = (float(ds.ImagePositionPatient[2]) - affine[2, 3]) / 2.0  # the real series: 2 mm steps
        ds.ImagePositionPatient = [*map(float, ds.ImagePositionPatient[:2]), round(-123.45 + k * step, 1)]
        ds.SliceThickness = step

    folder = _edited(src, tmp_path / "rounded", rounded)
    (group,) = _groups(folder)
    assert not group.pass_label
    loaded = load_series(group)
    assert np.array_equal(loaded.volume.array, expected) and not loaded.resampled and loaded.spacing == "regular"
    assert loaded.volume.spacing[2] == pytest.approx(step, abs=0.01)
    written = sorted(float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2])
                     for p in folder.iterdir())
    placed = loaded.volume.affine[2, 3] + loaded.volume.affine[2, 2] * np.arange(len(written))
    assert np.abs(placed - written).max() <= 0.1
    assert loaded.notes.startswith("slice positions written to 0.1 mm (steps ")
    assert "one regular grid, stacked at its" in loaded.notes


# -- slices shifted in-plane: a tilted gantry with a missing slice, a field of view recentred part-way ------------
def _pixel_points(files, rows, cols):
    """(LPS mm, HU) of a grid of pixels of each file, from the file's own header."""
    points, values = [], []
    for p in files:
        ds = pydicom.dcmread(p)
        hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        o, (sr, sc) = np.asarray(ds.ImageOrientationPatient, float), map(float, ds.PixelSpacing)
        for j in rows:
            for i in cols:
                points.append(np.asarray(ds.ImagePositionPatient, float) + i * sc * o[:3] + j * sr * o[3:])
                values.append(hu[j, i])
    return np.asarray(points), np.asarray(values)


def test_slices_shifted_in_plane_are_kept_whole_and_a_recentred_field_of_view_is_no_tilt(real_series, tmp_path):
    """Slices whose origins move in-plane and that are not one sheared grid are shifted onto one grid. That grid
    was the first slice's: a tilted series (15 deg) with a missing slice lost what its far slices held beyond it
    (stored as air, 10 mm here, 45 mm for 250 mm of a 10 deg tilt), and the real series with its field of view
    recentred 20 mm to the left half-way lost those 20 mm of every slice after it and was recorded as a 27.8 deg
    gantry tilt. The grid now holds every slice whole; only origins moving in proportion to the table position
    are a tilt."""
    from scipy import ndimage

    from inference.ml.geometry import lps_to_voxel

    src, expected, affine = real_series
    mid = sorted(src.iterdir())[10]
    smooth = np.rint(ndimage.gaussian_filter(pydicom.dcmread(mid).pixel_array.astype(float), 3))  # one real slice
    t = np.radians(15.0)

    def tilted(ds, i):
        ds.PixelData = smooth.astype(ds.pixel_array.dtype).tobytes()
        ds.ImageOrientationPatient = [1, 0, 0, 0, float(np.cos(t)), float(-np.sin(t))]

    folder = _edited(src, tmp_path / "tilt", tilted)
    sorted(folder.iterdir())[7].unlink()  # one missing slice: not one sheared grid
    loaded = _load(folder)
    assert loaded.tilt_deg == pytest.approx(15.0, abs=0.05) and loaded.spacing == "missing"
    assert loaded.notes.startswith("gantry tilt 15.0 deg: slices shifted onto an orthogonal grid covering them all")
    vol = loaded.volume
    files = sorted(folder.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    points, values = _pixel_points(files, rows=(0, 2, 100, 256, 400, 509, 511), cols=(0, 2, 256, 509, 511))
    ijk = lps_to_voxel(vol.affine, points)
    assert (ijk > -0.01).all() and (ijk < np.asarray(vol.shape[::-1]) - 0.99).all()  # every slice whole
    # inside the first and last slices and off the edges of each: air does not blur in from outside the scan
    points, values = _pixel_points(files[1:-1], rows=(2, 100, 256, 400, 509), cols=(2, 256, 509))
    ijk = lps_to_voxel(vol.affine, points)
    got = ndimage.map_coordinates(vol.array.astype(float), ijk[:, ::-1].T, order=1)
    # linear interpolation of a smooth image: a few HU; air (-1024) where a slice was cut: hundreds
    assert np.abs(got - values).max() < 30

    def recentred(ds, i):
        position = [float(v) for v in ds.ImagePositionPatient]
        if position[2] - affine[2, 3] >= 20:  # the upper 10 slices 20 columns to the patient's left (20 x 0.977 mm)
            ds.ImagePositionPatient = [position[0] + 20 * float(ds.PixelSpacing[1]), *position[1:]]

    folder = _edited(src, tmp_path / "recentred", recentred)
    loaded = _load(folder)
    assert loaded.tilt_deg == 0.0 and "deg" not in loaded.notes
    assert loaded.notes.startswith("slice origins move in-plane by up to 19.5 mm, not in proportion to the table "
                                   "position (a field of view recentred within the series; no gantry tilt)")
    vol = loaded.volume
    assert vol.shape == (20, 512, 532)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-4)  # the first slice's grid, 20 columns wider
    assert np.array_equal(vol.array[:10, :, :512], expected[:10]) and (vol.array[:10, :, 512:] == AIR).all()
    assert np.array_equal(vol.array[10:, :, 20:], expected[10:]) and (vol.array[10:, :, :20] == AIR).all()


def test_tilted_slice_positions_written_to_a_tenth_of_a_millimetre_are_one_grid(real_series, tmp_path):
    """The same, tilted 15 deg: along the tilted normal the positions are no multiples of 0.1 mm (steps of 1.16
    and 1.26 mm), but as rounded as the table positions they come from: one sheared grid, not two passes."""
    src, expected, affine = real_series
    t = np.radians(15.0)

    def rounded(ds, i):
        k = (float(ds.ImagePositionPatient[2]) - affine[2, 3]) / 2.0
        ds.ImagePositionPatient = [*map(float, ds.ImagePositionPatient[:2]), round(-123.45 + k * 1.25, 1)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, float(np.cos(t)), float(-np.sin(t))]

    (group,) = _groups(_edited(src, tmp_path / "tilted", rounded))
    loaded = load_series(group)
    assert not group.pass_label and loaded.spacing == "regular" and loaded.tilt_deg == pytest.approx(15.0, abs=0.05)
    assert loaded.notes.startswith("gantry tilt 15.0 deg: the sheared slice grid; slice positions written to 0.1 mm")


@pytest.mark.parametrize("missing", [(7,), (5, 14)])
def test_missing_slices_of_positions_written_to_a_tenth_of_a_millimetre(real_series, tmp_path, missing):
    """The real series at 0.625 mm steps written to 0.1 mm with one slice missing, or two apart: the gap of 1.2 or
    1.3 mm was measured against a 'local step' of 0.6 mm, so two missing slices were refused as 'about 1 slices
    missing' over 2x the local step, and one was resampled at 0.6 mm, the rounded steps' median. Steps of one
    grid may differ by the rounding: each gap is one missing slice, interpolated on the 0.625 mm grid."""
    src, expected, affine = real_series

    def rounded(ds, i):
        k = int(round((float(ds.ImagePositionPatient[2]) - affine[2, 3]) / 2.0))
        if k in missing:
            return
        ds.ImagePositionPatient = [*map(float, ds.ImagePositionPatient[:2]), round(-123.45 + k * 0.625, 1)]

    folder = _edited(src, tmp_path / "rounded", rounded)
    for p in sorted(folder.iterdir()):  # the slices left out
        if int(round((float(pydicom.dcmread(p).ImagePositionPatient[2]) - affine[2, 3]) / 2.0)) in missing:
            p.unlink()
    loaded = load_series(_groups(folder)[0])
    assert loaded.spacing == "missing" and loaded.volume.spacing[2] == pytest.approx(0.625, abs=0.01)
    assert loaded.volume.shape == expected.shape  # 20 slices on the 0.625 mm grid, the missing ones interpolated
    assert loaded.notes.count("one missing slice") == len(missing)
    assert np.array_equal(loaded.volume.array[0], expected[0])


# -- direction cosines written to two decimals -------------------------------------------------------------------
def test_direction_cosines_written_to_two_decimals_are_unit_vectors(real_series, tmp_path):
    """The real series rotated 15 deg in-plane with ImageOrientationPatient written to two decimals
    (0.97\\0.26\\0\\-0.26\\0.97\\0: each cosine pair 1.0042 long, inside the 0.01 the geometry check allows): the
    cosines scaled every pixel step, so the far corner of each slice lay 2.1 mm beyond where PixelSpacing puts it.
    They are directions: the pixels now lie PixelSpacing apart along them, the corners where the header puts them."""
    from inference.ml.geometry import volume_extent

    src, expected, affine = real_series
    cosines = [0.97, 0.26, 0.0, -0.26, 0.97, 0.0]

    folder = _edited(src, tmp_path / "cosines", lambda ds, i: setattr(ds, "ImageOrientationPatient", cosines))
    loaded = _load(folder)
    row, col = np.asarray(cosines[:3]), np.asarray(cosines[3:])
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    corners = []
    for p in sorted(folder.iterdir()):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        sr, sc = map(float, ds.PixelSpacing)
        for j in (0, ds.Rows - 1):
            for i in (0, ds.Columns - 1):
                corners.append(np.asarray(ds.ImagePositionPatient, float) + i * sc * row + j * sr * col)
    extent = volume_extent(loaded.volume.affine, loaded.volume.shape)
    # the stored LPS grid covers the slices' corners (to its voxel size), not 2 mm more
    np.testing.assert_allclose(extent.lps_min, np.min(corners, axis=0), atol=0.05)
    assert np.all(np.asarray(extent.lps_max) - np.max(corners, axis=0) < loaded.volume.spacing[0])
    assert np.all(np.asarray(extent.lps_max) - np.max(corners, axis=0) > -0.05)


# -- rescale values that are no single number ---------------------------------------------------------------------
def test_rescale_values_that_are_no_single_number_fail_their_file_naming_the_element(real_series, tmp_path):
    """A file whose RescaleIntercept holds two numbers (-1024\\0, a converter's) failed as 'malformed DICOM header
    (TypeError: float() argument must be a string or a real number, not 'MultiValue')', naming nothing; one whose
    RescaleSlope is 0 was read as slope 1 (0 is 'no slope' to ``or 1``): its HU were stored + intercept, none
    of them what the header says (every voxel the intercept). Both now fail their file naming the element; the
    same number twice (1\\1) is that number."""
    from pydicom.dataelem import DataElement

    from inference.ml.dicom.headers import BadHeader

    src, expected, affine = real_series
    values = {3: ("RescaleSlope", "1\\1"), 6: ("RescaleIntercept", "-1024\\0"), 12: ("RescaleSlope", "0"),
              15: ("RescaleIntercept", "nan")}
    positions = {}

    def edit(ds, i):
        k = int(round((float(ds.ImagePositionPatient[2]) - affine[2, 3]) / 2.0))
        positions[i] = k
        if k in values:
            keyword, value = values[k]
            tag = pydicom.datadict.tag_for_keyword(keyword)
            ds[tag] = DataElement(tag, "DS", value)

    folder = _edited(src, tmp_path / "rescale", edit)
    files = sorted(folder.iterdir())
    by_slice = {positions[i]: p for i, p in enumerate(files)}
    for k, message in ((6, r"RescaleIntercept holds 2 different numbers \(-1024\\0\): the stored values cannot be "
                           "turned into HU"),
                       (12, "RescaleSlope 0: every voxel would be the intercept"),
                       (15, "RescaleIntercept 'nan' is not a number")):
        with pytest.raises(BadHeader, match=message):
            read_header(by_slice[k])
    good = [read_header(p) for k, p in by_slice.items() if k not in (6, 12, 15)]
    loaded = load_series(group_series(good, folder)[0])  # the rest goes on, the three slices interpolated
    assert loaded.notes.count("one missing slice") == 3
    assert np.array_equal(loaded.volume.array[3], expected[3])  # 1\1: slope 1


def test_a_series_whose_images_all_lie_at_one_position_is_named_as_such(real_series, tmp_path):
    """Every image at one ImagePositionPatient (bolus tracking, perfusion: one location over time) was refused as
    'duplicate slice positions ... several acquisitions?'; the reason now says what the series is."""
    src, _, _ = real_series

    def one_place(ds, i):
        ds.ImagePositionPatient = [-200.0, -200.0, -100.0]
        ds.AcquisitionNumber = 1
        ds.pixel_array  # noqa: B018 - decoded, so that each image differs from the next
        arr = ds.pixel_array.copy()
        arr[0, 0] = i
        ds.PixelData = arr.tobytes()

    with pytest.raises(SeriesError, match="all 20 images lie at one position"):
        _load(_edited(src, tmp_path / "one_place", one_place))
