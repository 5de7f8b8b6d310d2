"""The voxel cap (``inference.ml.limits``) is checked from headers before any array is allocated, in every
reader and image builder."""
from __future__ import annotations

import contextlib
import gzip
import tracemalloc
import types
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from inference.ml.dicom import SeriesError, group_series, load_series, read_header, read_nifti_entry, scan_files
from inference.ml.dicom.pixels import DecodeError, read_frames
from inference.ml.geometry import Box
from inference.ml.images25d import build_images, build_side_images
from inference.ml.limits import TooManyVoxels, check_voxels, max_voxels
from inference.ml.volume import Volume, load_nifti, load_nifti_region
from tests.plugins.store import write_ct_series

BIG = (1024, 1024, 256)  # 268 million voxels: 512 MB as int16, 1.7 GB as the float copies a reader makes


def bomb_nifti(path: Path, shape=BIG) -> Path:
    """A small ``.nii.gz`` whose header declares ``shape`` int16 and whose data is all zeros (gzip of
    zeros: ~0.5 MB for 512 MB), like the probe's upload."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header.set_qform(np.diag([-1.0, -1.0, 1.0, 1.0]), code=1)
    header.set_sform(np.diag([-1.0, -1.0, 1.0, 1.0]), code=1)
    raw = header.binaryblock + b"\0" * 4  # vox_offset 352
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as fh:
        fh.write(comp.compress(raw))
        zeros = bytes(32 << 20)
        for _ in range(int(np.prod(shape)) * 2 // len(zeros)):
            fh.write(comp.compress(zeros))
        fh.write(comp.flush())
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return bomb_nifti(tmp_path_factory.mktemp("bomb") / "bomb.nii.gz")


@contextlib.contextmanager
def traced_peak():
    """The most memory Python held at once inside the block, in MB (``peak.mb``, set when the block ends)."""
    peak = types.SimpleNamespace(mb=0.0)
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.mb = tracemalloc.get_traced_memory()[1] / 1024**2
        tracemalloc.stop()


def _peak_mb(fn) -> tuple[Exception, float]:
    with traced_peak() as peak:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - returned to the test
            caught = exc
        else:
            caught = None
    return caught, peak.mb


def test_the_probe_file_is_small_and_declares_a_huge_volume(bomb):
    assert bomb.stat().st_size < 1.5 * 1024**2
    assert nib.load(str(bomb)).shape == BIG
    assert check_voxels((512, 512, 100)) == 512 * 512 * 100
    assert max_voxels() < np.prod(BIG)


@pytest.mark.parametrize("reader", [read_nifti_entry, load_nifti], ids=["import", "stored"])
def test_nifti_readers_refuse_before_allocating(bomb, reader):
    exc, peak = _peak_mb(lambda: reader(bomb))
    assert isinstance(exc, ValueError), exc
    assert "1024 x 1024 x 256" in str(exc) and "over the limit" in str(exc) and "ADRENAL_MAX_VOXELS" in str(exc)
    assert peak < 20, f"{peak:.0f} MB allocated before refusing"


def test_region_reads_are_capped_too(tmp_path, monkeypatch):
    path = tmp_path / "v.nii.gz"
    from inference.ml.volume import save_nifti

    save_nifti(Volume(np.zeros((20, 30, 30), np.int16), np.diag([1.0, 1.0, 2.0, 1.0])), path)
    box = Box((0.0, 0.0, 0.0), (29.0, 29.0, 38.0))
    assert load_nifti_region(path, box, margin_mm=0).array.size > 0
    monkeypatch.setenv("ADRENAL_MAX_VOXELS", "1000")
    with pytest.raises(TooManyVoxels, match="region of v.nii.gz"):
        load_nifti_region(path, box, margin_mm=0)


def test_the_cap_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("ADRENAL_MAX_VOXELS", "999")
    assert max_voxels() == 999
    with pytest.raises(TooManyVoxels):
        check_voxels((10, 10, 10))
    monkeypatch.setenv("ADRENAL_MAX_VOXELS", "not a number")
    assert max_voxels() == 200_000_000


def test_dicom_header_rows_columns_frames_are_checked_before_decoding(tmp_path):
    folder, _ = write_ct_series(tmp_path / "s", n=3)
    victim = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(victim)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 65535, 65535, 4  # 17 billion declared voxels, 512 bytes of pixels
    ds.save_as(victim)
    exc, peak = _peak_mb(lambda: read_frames(victim))
    assert isinstance(exc, DecodeError) and "frames x Rows x Columns" in str(exc) and "over the limit" in str(exc)
    assert peak < 20


def test_dicom_series_slices_times_matrix_are_checked_before_stacking(tmp_path, monkeypatch):
    folder, _ = write_ct_series(tmp_path / "s", n=6, rows=16, cols=16)
    groups = group_series([read_header(p) for p in scan_files(folder)], folder)
    monkeypatch.setenv("ADRENAL_MAX_VOXELS", str(5 * 16 * 16))
    with pytest.raises(SeriesError, match=r"6 x 16 x 16 is 1,536 voxels, over the limit of 1,280"):
        load_series(groups[0])


def test_dicom_resampling_output_is_capped(tmp_path, monkeypatch):
    # fine slices over a short stretch, then 5 mm: resampled at the finest step over the whole span
    zs = [0.0, 0.5, 1.0, 1.5, 2.0, 7.0, 12.0, 17.0, 22.0, 27.0, 32.0]
    folder, _ = write_ct_series(tmp_path / "s", z_positions=zs, rows=8, cols=8)
    groups = group_series([read_header(p) for p in scan_files(folder)], folder)
    monkeypatch.setenv("ADRENAL_MAX_VOXELS", str(len(zs) * 64 + 10))  # the slices fit; 65 resampled ones do not
    with pytest.raises(SeriesError, match="resampled"):
        load_series(groups[0])


def test_image_builders_never_allocate_past_the_cap(monkeypatch):
    volume = Volume(np.zeros((40, 64, 64), np.int16), np.diag([1.0, 1.0, 3.0, 1.0]))
    box = Box((10.0, 10.0, 10.0), (50.0, 50.0, 100.0))
    assert build_side_images(volume, box, "R").images.shape[0] > 0
    huge = Box((0.0, 0.0, -50_000.0), (60.0, 60.0, 50_000.0))  # 100 m of z: the probe's 3.6 GB request
    exc, peak = _peak_mb(lambda: build_side_images(volume, huge, "R"))
    assert isinstance(exc, TooManyVoxels) and "2.5D images of side R" in str(exc)
    assert peak < 50
    exc, peak = _peak_mb(lambda: build_images(volume, {"R": huge, "L": huge}))
    assert isinstance(exc, TooManyVoxels) and "joined 2.5D images" in str(exc)
    assert peak < 50


def test_gzip_of_the_bomb_really_expands(bomb):
    with gzip.open(bomb, "rb") as fh:
        assert len(fh.read(1 << 20)) == 1 << 20


@pytest.mark.parametrize("preamble", [True, False])
def test_a_large_value_in_a_dicom_header_is_not_read_with_it(tmp_path, preamble):
    """A DICOM file's header was read whole, so a vendor's 100 MB private element before the pixels cost 100 MB
    (and a 4 GiB upload's one element 4 GiB) in each of the header scan and the pixel read. Values over
    ``DEFER_BYTES`` are read from the file when used: the header and the pixels (2 MB, themselves deferred) come
    out as from the file without the element, with or without the 128-byte preamble."""
    from inference.ml.dicom.headers import DEFER_BYTES

    folder, expected = write_ct_series(tmp_path / "s", n=1, rows=1024, cols=1024)
    path = next(folder.iterdir())
    ds = pydicom.dcmread(path)
    ds.add_new(0x00091010, "LO", "BLOB VENDOR")
    ds.add_new(0x00091011, "OB", bytes(100 * 1024**2))
    ds.save_as(path)
    if not preamble:
        path.write_bytes(path.read_bytes()[128:])
        assert path.read_bytes()[:4] == b"DICM"
    assert 1024 * 1024 * 2 > DEFER_BYTES  # the pixel data is deferred too, and read when decoded
    with traced_peak() as peak:
        header = read_header(path)
        _, frames = read_frames(path)
    assert header.rows == 1024 and header.modality == "CT" and header.has_pixels
    assert frames.shape == (1, 1024, 1024)
    assert np.array_equal(frames[0].astype(np.float64) * 1.0 - 1024.0, expected[0])
    assert peak.mb < 40, f"{peak.mb:.0f} MB"


def test_a_dicom_header_of_too_many_elements_is_refused_while_it_is_read(tmp_path, monkeypatch):
    """pydicom builds an object for every element and sequence item of a header: a slice whose private sequence
    held 3 million empty items (48 MB) cost 2.2 GB and 79 s to read its header. Reading stops once more than
    ``MAX_HEADER_BYTES`` were read (here lowered to 256 KB against a 9.6 MB sequence) with a reason naming it,
    which fails the file (the importer's 'malformed DICOM header'), not its series."""
    import struct

    from inference.ml.dicom import headers

    folder, _ = write_ct_series(tmp_path / "s", n=1)
    path = next(folder.iterdir())
    ds = pydicom.dcmread(path)
    ds.add_new(0x00091010, "LO", "ITEMS VENDOR")
    ds.save_as(path)
    raw = path.read_bytes()
    at = raw.find(struct.pack("<HH", 0x0009, 0x1010))
    end = at + 8 + struct.unpack("<H", raw[at + 6:at + 8])[0]  # explicit VR little endian: tag, VR, length
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    sequence = (struct.pack("<HH", 0x0009, 0x1011) + b"SQ\0\0" + struct.pack("<I", 0xFFFFFFFF) + item * 600_000
                + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    path.write_bytes(raw[:end] + sequence + raw[end:])
    plain, _ = write_ct_series(tmp_path / "plain", n=1)
    assert read_header(next(plain.iterdir())).rows == 16  # the slice without the sequence is read
    monkeypatch.setattr(headers, "MAX_HEADER_BYTES", 256 * 1024)  # the default, 4 MB, refuses it after ~5 s
    with traced_peak() as peak:
        with pytest.raises(headers.HeaderTooLarge, match=r"more than 0.25 MB of elements .* refused before"):
            read_header(path)
    assert peak.mb < 64, f"{peak.mb:.0f} MB"


def extension_nifti(path: Path, esize: int, shape=(32, 32, 8)) -> Path:
    """A ``.nii.gz`` with one header extension declaring ``esize`` bytes (zeros, so the file stays small) before
    an int16 volume of ``shape`` (air, -1024 HU: a NIfTI without air is refused as not CT)."""
    import struct

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header.set_qform(np.diag([-1.0, -1.0, 1.0, 1.0]), code=1)
    header.set_sform(np.diag([-1.0, -1.0, 1.0, 1.0]), code=1)
    header["vox_offset"] = 352 + max(esize, 16)
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as fh:
        fh.write(comp.compress(header.binaryblock + bytes([1, 0, 0, 0]) + struct.pack("<ii", esize, 0)))
        left = max(esize, 16) - 8
        zeros = bytes(8 << 20)
        while left > 0:
            fh.write(comp.compress(zeros[:min(left, len(zeros))]))
            left -= len(zeros)
        fh.write(comp.compress(np.full(shape, -1024, "<i2").tobytes()))
        fh.write(comp.flush())
    return path


def test_nifti_header_extensions_are_bounded_before_nibabel_reads_them(tmp_path):
    """nibabel reads every header extension whole while loading the header, to its declared size whatever the
    data offset says: a 1 MB .nii.gz declaring a 1 GB extension of zeros cost 1.2 GB before its dimensions were
    checked. Extensions are walked from their own headers first: over 16 MB, or a size that would read to the end
    of the file, refused naming it; a small one is read as before."""
    from inference.ml.dicom import read_nifti_entry
    from inference.ml.limits import ExtensionsTooLarge

    big = extension_nifti(tmp_path / "big.nii.gz", 64 * 1024**2)
    assert big.stat().st_size < 1024**2
    with traced_peak() as peak:
        for reader in (read_nifti_entry, load_nifti):
            with pytest.raises(ExtensionsTooLarge, match=r"extensions of more than 64 MB .*limit 16 MB"):
                reader(big)
    assert peak.mb < 16, f"{peak.mb:.0f} MB"
    with pytest.raises(ExtensionsTooLarge, match="declared size 0"):
        read_nifti_entry(extension_nifti(tmp_path / "zero.nii.gz", 0))
    entry = read_nifti_entry(extension_nifti(tmp_path / "small.nii.gz", 4096))
    assert entry.volume.shape == (8, 32, 32)


def test_a_deflated_dicom_file_is_inflated_only_within_the_voxel_cap(tmp_path, monkeypatch):
    """pydicom inflates a deflated data set (transfer syntax 1.2.840.10008.1.2.1.99) whole before reading it: an
    892 KB file holding 800 MB of zeros cost 1.8 GB at the header scan. It is inflated in chunks and counted first;
    past 2 bytes a voxel of the cap (plus the header's 4 MB) it is refused naming the cap. A deflated slice within
    it reads as before."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from inference.ml.dicom.headers import HeaderTooLarge

    folder, expected = write_ct_series(tmp_path / "s", n=2, rows=64, cols=64)
    plain, bomb = sorted(folder.iterdir())
    ds = pydicom.dcmread(plain)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(plain, enforce_file_format=True)
    ds = pydicom.dcmread(bomb)
    ds.add_new(0x00091011, "OB", bytes(64 * 1024**2))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(bomb, enforce_file_format=True)
    assert bomb.stat().st_size < 1024**2
    monkeypatch.setenv("ADRENAL_MAX_VOXELS", str(8 * 1024**2))  # 16 MB + 4 MB may be inflated
    header, (_, frames) = read_header(plain), read_frames(plain)
    assert header.rows == 64 and frames.shape == (1, 64, 64)
    with traced_peak() as peak:
        with pytest.raises(HeaderTooLarge, match="inflates to more than 20 MB"):
            read_header(bomb)
        with pytest.raises(DecodeError, match="inflates to more than 20 MB"):
            read_frames(bomb)
    assert peak.mb < 40, f"{peak.mb:.0f} MB"


def test_compressed_frames_larger_than_the_header_says_are_refused_before_decoding(tmp_path):
    """The decoders allocate the image a JPEG 2000 or JPEG frame declares, whatever Rows and Columns say: a
    627-byte JPEG 2000 codestream of 12000 x 12000 in a '64 x 64' slice cost 1 GB before pydicom found the sizes
    differ. The frame's own SIZ / SOF segment is read first; a frame of the header's size decodes as before."""
    import io

    import openjpeg
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit

    folder, _ = write_ct_series(tmp_path / "s", n=1, rows=64, cols=64)
    path = next(folder.iterdir())

    def with_frame(name: str, syntax, frame: bytes, **attrs) -> Path:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = syntax
        for key, value in attrs.items():
            setattr(ds, key, value)
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds.save_as(tmp_path / name, enforce_file_format=True)
        return tmp_path / name

    honest = openjpeg.encode(np.full((64, 64), 1100, np.uint16), bits_stored=16)
    assert read_frames(with_frame("ok.dcm", JPEG2000Lossless, honest))[1][0, 5, 5] == 1100
    j2k = with_frame("j2k.dcm", JPEG2000Lossless, openjpeg.encode(np.zeros((4000, 4000), np.uint16), bits_stored=16))
    jpeg_bytes = io.BytesIO()
    Image.new("L", (4000, 4000)).save(jpeg_bytes, "JPEG")
    jpeg = with_frame("jpeg.dcm", JPEGBaseline8Bit, jpeg_bytes.getvalue(), BitsAllocated=8, BitsStored=8, HighBit=7,
                      PixelRepresentation=0)
    with traced_peak() as peak:
        for bomb in (j2k, jpeg):
            with pytest.raises(DecodeError, match=r"frame 1: its compressed image declares 4000 x 4000 pixels .* "
                                                  r"the header 64 x 64 .* refused before decoding"):
                read_frames(bomb)
    assert peak.mb < 16, f"{peak.mb:.0f} MB"


def test_a_dicom_header_keeps_no_huge_text(tmp_path):
    """Every header of an import is held until its series are grouped, and implicit VR lets any text be 4 GB: a
    200 MB StudyDescription was read (it is used) and kept whole in the header. Values pydicom deferred (over 1 MB)
    are dropped from the header before anything reads them, texts kept to 1024 characters and multi-valued
    elements to 64 values."""
    import warnings

    from inference.ml.dicom.headers import MAX_TEXT, MAX_VALUES

    folder, _ = write_ct_series(tmp_path / "s", n=1)
    path = next(folder.iterdir())
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.StudyDescription = "A" * (50 * 1024**2)
    ds.SeriesDescription = "B" * 5000
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] + ["X"] * 10_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom: longer than the VR allows
        ds.save_as(path, enforce_file_format=True)
    with traced_peak() as peak:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = read_header(path)
    assert peak.mb < 16, f"{peak.mb:.0f} MB"
    assert "StudyDescription" not in header.meta and header.meta["SeriesDescription"] == "B" * MAX_TEXT
    assert header.image_type[:3] == ("ORIGINAL", "PRIMARY", "AXIAL") and len(header.image_type) == MAX_VALUES
    assert header.rows == 16 and header.modality == "CT"
