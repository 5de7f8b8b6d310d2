"""NIfTI files as the second entry point (as in the original study): one file, one scan volume.

A NIfTI may store its voxels in any axis order (RAS, LPS, slice axis first, flipped axes, any permutation);
consumers of the store (proposals, the viewer, the 2.5D builder) read axial slices on the first array axis. So
every file is put on the store's canonical axes at import (``volume.to_store_grid``: axis permutation and flips
only, values untouched; the same grid a standard axial DICOM series gets; a file whose axes are oblique, e.g.
rotated in its sform, is resampled onto LPS axes, linear, and noted), then refused like a DICOM series when it
has fewer than ``MIN_SLICES`` axial slices or no axis near the patient's z axis.

Orientation: the sform when its code is set, else the qform (as nibabel and ``nib.load(...).affine``); a qform
and sform that are both set and place the grid's corners more than ``QFORM_SFORM_TOLERANCE_MM`` apart are noted.
A file with neither, or whose qform and sform give different orientations (tools differ in which they read, so
one of them would swap left and right), is refused: this project judges each gland on its side. So is one whose
orientation is degenerate, where nibabel would quietly guess: a set sform that is singular, or a qform used with a
voxel size (pixdim 1-3) that is zero, negative or not a number, or a qfac (pixdim 0) negative but not -1 (nibabel
reads it as 1, niftilib as -1: the slice axis flipped or not).

A NIfTI names no modality: one whose values hold no air (``assessability.hounsfield_reason``: every CT field of
view holds some below -500 HU) is refused as not CT, with what it likely is: a segmentation mask or label map
(TotalSegmentator writes them beside its CT, ``segmentations/*.nii.gz``), or an MR or other image.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..assessability import hounsfield_reason
from ..geometry import AXIAL_MIN_COS, LPS_TO_RAS, affines_differ_mm, canonical_index_map, slice_axis_cosine
from ..limits import ExtensionsTooLarge, check_nifti_extensions, check_voxels
from ..volume import Volume, to_store_grid
from .exclusion import MIN_SLICES
from .pixels import implausible_hu

QFORM_SFORM_TOLERANCE_MM = 0.1
_CODES = {0: "unknown", 1: "scanner", 2: "aligned", 3: "talairach", 4: "mni", 5: "template"}


@dataclass
class NiftiEntry:
    """One imported NIfTI file.

    ``volume``: int16 HU on the canonical axes (array ``[k, j, i]``, affine voxel -> LPS mm); ``notes``: what was
    done or found (reorientation, qform/sform disagreement), for the scan's notes; ``source_shape_ijk`` and
    ``source_affine_lps``: the file's own grid; ``to_source``: integer 4x4 with
    ``file_ijk = to_source @ canonical_ijk`` (identity when the file already was canonical; a float 4x4 when
    oblique file axes were resampled, ``resampled``)."""

    volume: Volume
    notes: list[str] = field(default_factory=list)
    source_shape_ijk: tuple[int, int, int] = (0, 0, 0)
    source_affine_lps: np.ndarray = field(default_factory=lambda: np.eye(4))
    to_source: np.ndarray = field(default_factory=lambda: np.eye(4, dtype=int))
    affine_source: str = "sform"  # "sform", "qform" or "none"
    resampled: bool = False  # oblique file axes, resampled onto LPS axes (``volume.to_store_grid``)


def is_nifti(path: str | os.PathLike) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


_OTHER_FORMATS = {".hdr": "Analyze or NIfTI header/image pair (.hdr/.img)",
                  ".img": "Analyze or NIfTI header/image pair (.hdr/.img)", ".mha": "MetaImage (.mha/.mhd)",
                  ".mhd": "MetaImage (.mha/.mhd)", ".nrrd": "NRRD", ".nhdr": "NRRD", ".mgz": "FreeSurfer MGH",
                  ".mgh": "FreeSurfer MGH"}


def other_volume_format(path: str | os.PathLike) -> str | None:
    """Why a file that is not DICOM is not imported, when its name says it is another volume format (the reason
    names the format and the way in), else None."""
    name = Path(path).name.lower()
    suffix = Path(name[:-3] if name.endswith(".gz") else name).suffix
    kind = _OTHER_FORMATS.get(suffix)
    if kind is None:
        return None
    return (f"a volume in another format ({kind}): only DICOM and single-file NIfTI (.nii, .nii.gz) are imported, "
            "so that the orientation, and which side is the patient's left, is known; save it as one .nii.gz with "
            "its orientation and import that")


GZIP_MAGIC = b"\x1f\x8b"


def is_gzipped(path: str | os.PathLike) -> bool:
    """Whether the file's content is gzip (its first two bytes), whatever its name says."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def open_content(path: str | os.PathLike):
    """The file opened for reading its (uncompressed) content: gunzipped when its bytes are gzip, as is
    otherwise, whatever its name says (a ``.nii.gz`` that is plain NIfTI, a ``.nii`` that is gzipped)."""
    return gzip.open(path, "rb") if is_gzipped(path) else open(path, "rb")


def _load_image(path: Path):
    """The NIfTI image at ``path``. nibabel picks gzip or not by the name; a file whose bytes say otherwise (a
    plain NIfTI named ``.nii.gz``, a gzipped one named ``.nii``) is the same scan and is read from its content
    (NIfTI-1 or NIfTI-2 by the header size field)."""
    if is_gzipped(path) == path.name.lower().endswith(".gz"):
        return nib.load(str(path), keep_file_open=True)  # one open file for the slabs (gzip read once)
    fh = open_content(path)
    try:
        head = fh.read(4)
        fh.seek(0)
        sizes = {struct.unpack("<i", head)[0], struct.unpack(">i", head)[0]} if len(head) == 4 else set()
        klass = nib.Nifti2Image if 540 in sizes else nib.Nifti1Image
        holder = nib.FileHolder(filename=str(path), fileobj=fh)
        return klass.from_file_map({"header": holder, "image": holder})
    except BaseException:
        fh.close()
        raise


def _without_folder(message: str, path: Path) -> str:
    """``message`` with the file's folder taken out: a reason names the file, not where it lies on the server."""
    return message.replace(str(path.parent) + os.sep, "")


def nifti_stem(path: str | os.PathLike) -> str:
    name = Path(path).name
    return name[:-7] if name.lower().endswith(".nii.gz") else name[:-4]


def axis_codes(affine_lps: np.ndarray) -> str:
    """The patient direction each voxel axis ``i, j, k`` runs towards, e.g. ``"LPS"`` or ``"SAR"``."""
    a = np.asarray(affine_lps, float)[:3, :3]
    letters = ("RL", "AP", "IS")
    out = []
    for axis in range(3):
        w = int(np.argmax(np.abs(a[:, axis])))
        out.append(letters[w][1] if a[w, axis] > 0 else letters[w][0])
    return "".join(out)


def _raw_pixdim(path: Path) -> tuple[float, ...]:
    """``pixdim[0..7]`` as the file stores them: nibabel's header, once loaded, holds them made positive (or 1)."""
    with open_content(path) as fh:
        head = fh.read(540)
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0] if len(head) >= 4 else 0
        if size == 348 and len(head) >= 108:
            return struct.unpack(order + "8f", head[76:108])
        if size == 540 and len(head) >= 168:
            return struct.unpack(order + "8d", head[104:168])
    return (1.0,) * 8


def _orientation_notes(img, shape_ijk, raw_pixdim) -> tuple[list[str], str]:
    header = img.header
    q_code, s_code = int(header["qform_code"]), int(header["sform_code"])
    if s_code > 0:
        used = "sform"
    elif q_code > 0:
        used = "qform"
    else:
        raise ValueError("NIfTI has neither qform nor sform (both codes 0): its orientation, which side is the "
                         "patient's left included, is unknown; set the qform or sform and import it again")
    if s_code > 0:
        sform = np.asarray(header.get_sform(), float)[:3, :3]
        if not np.isfinite(sform).all() or abs(float(np.linalg.det(sform))) < 1e-6:
            raise ValueError(f"NIfTI sform ({_CODES.get(s_code, s_code)}) is singular (srow_x/y/z give no 3D grid): "
                             "where each voxel lies, and which side is the patient's left, is unknown; fix the sform "
                             "(or set sform_code 0 to use the qform) and import it again")
    if used == "qform":
        bad = [f"pixdim[{n}] {v:g}" for n, v in zip((1, 2, 3), raw_pixdim[1:4]) if not (np.isfinite(v) and v > 0)]
        qfac = raw_pixdim[0]
        if not np.isfinite(qfac) or (qfac < 0 and qfac != -1):  # nibabel reads it as 1, niftilib as -1
            bad.insert(0, f"pixdim[0] (qfac) {qfac:g}")
        if bad:  # nibabel takes |pixdim| or 1 mm, niftilib 1 mm, Analyze-era tools flip an axis: readers disagree
            raise ValueError(f"NIfTI voxel size or qfac not valid ({', '.join(bad)}) where the qform is used: "
                             "readers disagree on what it means (1 mm, its absolute value, or a flipped axis, which "
                             "would swap the patient's sides); set positive pixdim values and import it again")
    notes = []
    if q_code > 0 and s_code > 0:
        q_axes = axis_codes(LPS_TO_RAS @ header.get_qform())
        s_axes = axis_codes(LPS_TO_RAS @ header.get_sform())
        if q_axes != s_axes:  # tools differ in which they read (nibabel the sform, others the qform)
            raise ValueError(f"NIfTI qform ({q_axes}) and sform ({s_axes}) give different orientations: readers that "
                             "take the other one would swap the patient's sides; make them agree and import it again")
        diff = affines_differ_mm(header.get_qform(), header.get_sform(), shape_ijk)
        if diff > QFORM_SFORM_TOLERANCE_MM:
            notes.append(
                f"qform ({_CODES.get(q_code, q_code)}, {axis_codes(LPS_TO_RAS @ header.get_qform())}) and sform "
                f"({_CODES.get(s_code, s_code)}, {axis_codes(LPS_TO_RAS @ header.get_sform())}) disagree by up to "
                f"{diff:.1f} mm: the sform is used"
            )
    return notes, used


SLAB_VOXELS = 8_000_000  # converted at a time: a few tens of MB of float64, whatever the volume's size


def _read_hu(img, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """The file's voxels as int16 HU ``[k, j, i]`` (file axes reversed) and how many were not numbers (stored as
    -1024). Read slab by slab along the file's last axis into the int16 array: scaled data (scl_slope/scl_inter,
    as dcm2niix writes unsigned series) and float data come out of nibabel as float64, and converting the whole
    volume at once took about 20 bytes a voxel (3.1 GB for 512x512x600) beside the DICOM path's 2."""
    nx, ny, nz = (int(v) for v in shape)
    out = np.empty((nz, ny, nx), np.int16)
    step = max(1, SLAB_VOXELS // max(1, nx * ny))
    proxy = img.dataobj
    not_numbers = 0
    for k0 in range(0, nz, step):
        k1 = min(nz, k0 + step)
        chunk = np.asanyarray(proxy[(slice(None), slice(None), slice(k0, k1)) + (0,) * (len(img.shape) - 3)])
        if not np.issubdtype(chunk.dtype, np.integer):
            bad = ~np.isfinite(chunk)
            if bad.any():
                not_numbers += int(bad.sum())
                chunk = np.where(bad, -1024.0, chunk)
            chunk = np.rint(chunk)
        out[k0:k1] = np.clip(chunk, -32768, 32767).astype(np.int16).transpose(2, 1, 0)
    return out, not_numbers


LABEL_MAP_MAX_VALUES = 256  # a label map's distinct values (TotalSegmentator's: up to 118); a CT's are thousands


def _not_ct_reason(array: np.ndarray) -> str:
    """Why a NIfTI without air is refused, with what it likely is: a mask or label map (few non-negative whole
    values), else an image of another modality."""
    values = np.unique(array[:: max(1, array.shape[0] // 64)])
    lo, hi = int(values.min()), int(values.max())
    kind = (f"a segmentation mask or label map ({values.size} distinct whole value(s)), not an image"
            if values.size <= LABEL_MAP_MAX_VALUES and lo >= 0 else "an image of another modality (MR, PET?), not CT")
    return f"not CT: no air in Hounsfield units (values from {lo} to {hi}): {kind}; the store takes CT in HU"


def read_nifti_entry(path: str | os.PathLike, *, min_slices: int = MIN_SLICES) -> NiftiEntry:
    """A 3D NIfTI file as an int16 HU volume on the store's canonical axes, with its notes.

    Raises ValueError with the reason when unusable: unreadable, not 3D, no qform or sform, a qform and sform of
    different orientations, singular affine, no voxel axis within ``acos(AXIAL_MIN_COS)`` of the patient's z axis,
    or fewer than ``min_slices`` axial slices, or values without air (not CT: a mask, a label map, an MR)."""
    path = Path(path)
    try:
        check_nifti_extensions(path)
        img = _load_image(path)
    except ExtensionsTooLarge:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"unreadable NIfTI ({type(exc).__name__}: {_without_folder(str(exc), path)})") from exc
    shape = img.shape
    if len(shape) > 3 and all(n == 1 for n in shape[3:]):  # (x, y, z, 1) or (x, y, z, 1, 1): one volume
        shape = shape[:3]
    if len(shape) != 3:
        raise ValueError(f"not a 3D volume (shape {img.shape})")
    check_voxels(shape, "NIfTI volume")
    stored = img.get_data_dtype()
    if stored.fields is not None or stored.kind not in "biuf":  # RGB(A) records, complex numbers
        raise ValueError(f"not a greyscale volume: voxels of type {stored.names or stored} (RGB or complex data "
                         "hold no HU)")
    notes, used = _orientation_notes(img, shape, _raw_pixdim(path))
    source_affine = LPS_TO_RAS @ img.affine
    try:
        array, not_numbers = _read_hu(img, shape)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data
        raise ValueError(f"unreadable NIfTI data ({type(exc).__name__}: {_without_folder(str(exc), path)})") from exc
    finally:
        opened = img.file_map["image"].fileobj  # read from its content (``_load_image``): closed now, not at exit
        if opened is not None:
            opened.close()
    problem = implausible_hu(array)
    if problem:
        slope, inter = img.header.get_slope_inter()
        raise ValueError(f"{problem}: a signed volume stored as unsigned, or a wrong scl_slope/scl_inter? (file: "
                         f"{img.get_data_dtype()}, scl_slope {slope if slope is not None else 'none'}, scl_inter "
                         f"{inter if inter is not None else 'none'})")
    if hounsfield_reason(Volume(array, source_affine)):  # no modality in a NIfTI: a mask, a label map or an MR
        raise ValueError(_not_ct_reason(array))  # would otherwise be stored as a CT scan
    if not_numbers:  # NaN has no integer value: stored as air, and said so
        notes.append(f"{not_numbers} voxel(s) not a number (NaN or infinity) stored as -1024 HU")
    try:  # the slice axis (the voxel axis nearest to z) is judged before any resampling
        cos = slice_axis_cosine(source_affine @ canonical_index_map(source_affine, shape))
    except ValueError as exc:
        raise ValueError(f"unusable NIfTI orientation: {exc}") from exc
    if cos < AXIAL_MIN_COS:
        raise ValueError(f"non-axial volume: no voxel axis within {np.degrees(np.arccos(AXIAL_MIN_COS)):.0f} deg of "
                         f"the patient's z axis (closest {np.degrees(np.arccos(min(cos, 1.0))):.0f} deg)")
    volume, to_source, oblique_note = to_store_grid(Volume(array, source_affine))
    if volume.shape[0] < min_slices:
        raise ValueError(f"too short for 2.5D images: {volume.shape[0]} axial slice(s), need at least {min_slices} "
                         f"(file axes {axis_codes(source_affine)}, shape {tuple(int(s) for s in shape)})")
    codes = axis_codes(source_affine)
    if oblique_note:
        notes.insert(0, f"{oblique_note} (file axes {codes}, shape {tuple(int(s) for s in shape)})")
    elif not np.array_equal(to_source, np.eye(4, dtype=int)):
        notes.insert(0, f"reoriented from file axes {codes} (shape {tuple(int(s) for s in shape)}) to the store's "
                        f"LPS axes, axial slices first (no interpolation)")
    return NiftiEntry(volume, notes, tuple(int(s) for s in shape), source_affine, to_source, used,
                      bool(oblique_note))


def load_nifti_entry(path: str | os.PathLike, *, min_slices: int = MIN_SLICES) -> Volume:
    """The volume of ``read_nifti_entry`` (int16 HU on the canonical axes); raises ValueError with the reason."""
    return read_nifti_entry(path, min_slices=min_slices).volume
