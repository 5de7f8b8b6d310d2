"""Uploads, the one path for the store's zip import and the prediction upload: streamed to disk under
``ADRENAL_MAX_UPLOAD_BYTES`` (:class:`LimitedUploadHandler` stops reading past it, :func:`receive_upload`
saves and checks), zips checked before they are queued (:func:`check_zip`: entry count, declared expanded size,
expansion ratio, no absolute/``..`` paths, no links), extracted only inside the job (:func:`extract_zip`, which
counts the bytes really written), and removed when the job ends, whether it succeeded, failed or was cancelled
(:func:`discard_upload`, connected to ``adrenal_site.jobs.runner.job_ended``)."""
from __future__ import annotations

import re
import shutil
import stat
import struct
import uuid
import zipfile
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

from adrenal_site.storage import local_path, resolve_location
from inference.ml.atomic import atomic_path
from inference.ml.dicom.nifti import open_content

MAX_ENTRIES = 200_000
MAX_DIRECTORY_BYTES = 64 * 1024**2  # a zip's central directory (200 000 entries of 300-byte paths fit)
MAX_RATIO = 100  # default for settings.ADRENAL_MAX_ZIP_RATIO: expanded bytes per archive byte (CT zips: 1-10)
RATIO_FLOOR_BYTES = 16 * 1024**2  # a zip expanding to less is no zip bomb whatever its ratio (a 120 KB DICOM of
# flat synthetic pixels deflates 110 times; a mask or padded image more)
EXPAND_FACTOR = 4  # an archive may expand to this many times ADRENAL_MAX_UPLOAD_BYTES


class UploadRefused(Exception):
    """The upload is refused; the message says why (shown to the admin)."""


class LimitedUploadHandler(FileUploadHandler):
    """Stops reading an upload as soon as more than ``limit`` bytes of files arrived (marks the request), so an
    oversized upload is never written to disk whole."""

    def __init__(self, request, limit: int):
        super().__init__(request)
        self.limit, self.received = limit, 0

    def receive_data_chunk(self, raw_data: bytes, start: int):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.request.upload_refused = f"upload larger than the limit of {self.limit / 1024**2:.0f} MB"
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int):
        return None


def save_stream(chunks, dest: Path, max_bytes: int) -> int:
    """Write ``chunks`` to ``dest`` (atomically), refusing once more than ``max_bytes`` arrived."""
    size = 0
    with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
        for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise UploadRefused(f"upload larger than the limit of {max_bytes / 1024**2:.0f} MB")
            fh.write(chunk)
    return size


def max_upload_bytes() -> int:
    """The largest upload accepted, bytes (``settings.ADRENAL_MAX_UPLOAD_BYTES``)."""
    return int(settings.ADRENAL_MAX_UPLOAD_BYTES)


def max_expanded_bytes() -> int:
    """The most a zip upload may expand to, bytes (``EXPAND_FACTOR`` x the upload limit)."""
    return max_upload_bytes() * EXPAND_FACTOR


def max_ratio() -> float:
    return float(getattr(settings, "ADRENAL_MAX_ZIP_RATIO", MAX_RATIO))


def check_zip(path: Path, max_bytes: int | None = None, ratio: float | None = None) -> list[zipfile.ZipInfo]:
    """The members of a zip upload; ``UploadRefused`` (with the reason) for non-zip or damaged files, a zip
    without a non-empty file, more than ``MAX_ENTRIES`` entries, absolute or ``..`` entries, symbolic links, archives that declare more than
    ``max_bytes`` (default :func:`max_expanded_bytes`) expanded, or that expand more than ``ratio`` times
    their own size (default ``ADRENAL_MAX_ZIP_RATIO``, 100: a zip bomb) to more than ``RATIO_FLOOR_BYTES``."""
    max_bytes = max_expanded_bytes() if max_bytes is None else max_bytes
    ratio = max_ratio() if ratio is None else ratio
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            head = fh.read(132)
        kind = "a single DICOM file" if head[128:132] == b"DICM" else "not a zip archive"
        raise UploadRefused(f"the upload is {kind}; upload a .zip of the study folders")
    _check_directory(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadRefused(f"the zip archive is damaged: {exc}") from exc
    if len(members) > MAX_ENTRIES:
        raise UploadRefused(f"the zip has {len(members)} entries (limit {MAX_ENTRIES})")
    if not any(not m.is_dir() and m.file_size > 0 for m in members):
        raise UploadRefused("the zip holds no files (only folders or empty files); nothing to import")
    bad = []
    for m in members:
        name = m.filename.replace("\\", "/")
        pure = PurePosixPath(name)
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in pure.parts:
            bad.append(m.filename)
    if bad:
        raise UploadRefused(
            f"the zip has {len(bad)} entr{'y' if len(bad) == 1 else 'ies'} with an absolute path or '..' "
            f"(e.g. {bad[0]!r}); nothing was imported"
        )
    problem = _unextractable(members)
    if problem:
        raise UploadRefused(f"{problem}; nothing was imported")
    links = [m.filename for m in members if stat.S_ISLNK(m.external_attr >> 16)]
    if links:
        raise UploadRefused(f"the zip has {len(links)} symbolic link(s) (e.g. {links[0]!r}); links are not accepted")
    total = sum(m.file_size for m in members)
    if total > max_bytes:
        raise UploadRefused(f"the zip expands to {total / 1024**2:.0f} MB, over the limit of {max_bytes / 1024**2:.0f} MB")
    size = max(path.stat().st_size, 1)
    if total > RATIO_FLOOR_BYTES and total / size > ratio:
        raise UploadRefused(f"the zip expands {total / size:.0f} times its size ({size / 1024**2:.1f} MB to "
                            f"{total / 1024**2:.0f} MB), over the limit of {ratio:g} times; refused as a zip bomb")
    return members


MAX_NAME_BYTES = 255  # one file or folder name (the filesystems' NAME_MAX)
MAX_PATH_BYTES = 1024  # an entry's whole path inside the zip
MAX_DEPTH = 64  # folders an entry is nested in


def _unextractable(members: list[zipfile.ZipInfo]) -> str | None:
    """Why the entries could not all be extracted as named (a file name over ``MAX_NAME_BYTES``, a path over
    ``MAX_PATH_BYTES`` or nested over ``MAX_DEPTH`` folders, two entries of one name, a name that is a file and a
    folder), else None. Before, such a zip was accepted and its job failed with the operating system's error
    (``File name too long``, ``File exists``, a RecursionError) and nothing imported."""
    files, folders = {}, set()
    for m in members:
        parts = tuple(p for p in PurePosixPath(m.filename.replace("\\", "/")).parts if p not in ("", "."))
        if not parts:
            continue
        long = next((p for p in parts if len(p.encode()) > MAX_NAME_BYTES), None)
        if long is not None:
            return f"the zip entry {m.filename[:80]!r}... has a name of {len(long.encode())} bytes (limit {MAX_NAME_BYTES})"
        if len(parts) - 1 > MAX_DEPTH:
            return f"the zip entry {m.filename[:80]!r}... lies {len(parts) - 1} folders deep (limit {MAX_DEPTH})"
        if len("/".join(parts).encode()) > MAX_PATH_BYTES:
            return f"the zip entry {m.filename[:80]!r}... has a path over {MAX_PATH_BYTES} bytes"
        folders.update(parts[:k] for k in range(1, len(parts)))
        if m.is_dir():
            folders.add(parts)
        elif parts in files:
            return f"the zip has two entries named {m.filename!r}"
        else:
            files[parts] = m.filename
    both = next((files[f] for f in files if f in folders), None)
    if both is not None:
        return f"the zip entry {both!r} is a file and a folder of other entries"
    return None


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # its zip64 form
_LOCATOR64 = struct.Struct("<4sLQL")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # one central-directory entry's fixed part


def _check_directory(path: Path) -> None:
    """Refuse a zip whose central directory is over ``MAX_DIRECTORY_BYTES`` or holds more than ``MAX_ENTRIES``
    entries, walking its headers without building them: ``zipfile.ZipFile`` makes an object for every entry the
    directory holds (about 1.4 KB each, whatever count the end record declares), so a 47 MB upload of a million
    directory entries cost the web process 1.4 GB and 18 s before the entry count was checked."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - (_EOCD.size + 0xFFFF)))
        tail = fh.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _EOCD.size:
            return  # zipfile names the damage
        _, _, _, _, declared, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
        end = size - len(tail) + at  # where the directory (or its zip64 end record) ends
        locator = tail[at - _LOCATOR64.size:at] if at >= _LOCATOR64.size else b""
        if locator[:4] == b"PK\x06\x07":
            fh.seek(max(0, end - _LOCATOR64.size - _EOCD64.size))
            record = fh.read(_EOCD64.size)
            if len(record) == _EOCD64.size and record[:4] == b"PK\x06\x06":
                _, _, _, _, _, _, _, declared, cd_size, cd_offset = _EOCD64.unpack(record)
                end -= _LOCATOR64.size + _EOCD64.size
        if declared > MAX_ENTRIES:
            raise UploadRefused(f"the zip has {declared} entries (limit {MAX_ENTRIES})")
        if cd_size > MAX_DIRECTORY_BYTES:
            raise UploadRefused(f"the zip's directory of entries is {cd_size / 1024**2:.0f} MB (limit "
                                f"{MAX_DIRECTORY_BYTES / 1024**2:.0f} MB); upload fewer files per archive")
        start = end - cd_size
        if start < 0:
            return  # zipfile names the damage
        fh.seek(start)
        directory = fh.read(cd_size)
    count, pos = 0, 0
    while pos + _CENTRAL.size <= len(directory) and directory[pos:pos + 4] == b"PK\x01\x02":
        fields = _CENTRAL.unpack_from(directory, pos)
        pos += _CENTRAL.size + fields[12] + fields[13] + fields[14]  # name, extra field, comment
        count += 1
        if count > MAX_ENTRIES:
            raise UploadRefused(f"the zip has more than {MAX_ENTRIES} entries (limit {MAX_ENTRIES})")


def extract_zip(path: Path, dest: Path, max_bytes: int | None = None) -> Path:
    """Extract a checked zip into ``dest`` (emptied first, so a rerun extracts the same tree); stops with
    ``UploadRefused`` once more than ``max_bytes`` (default :func:`max_expanded_bytes`) were really written,
    whatever the entries declare. Run it in the job, never in a web request."""
    max_bytes = max_expanded_bytes() if max_bytes is None else max_bytes
    members = check_zip(path, max_bytes)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    real = dest.resolve()
    written = 0
    with zipfile.ZipFile(path) as zf:
        for m in members:
            if m.is_dir():
                continue
            target = (dest / m.filename.replace("\\", "/")).resolve()
            if not target.is_relative_to(real):
                raise UploadRefused(f"zip entry {m.filename!r} leaves the upload folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > max_bytes:
                        raise UploadRefused("the zip expands beyond its declared size limit")
                    out.write(chunk)
    return dest


def uploads_root() -> Path:
    """``uploads/`` of the shared storage on this host."""
    return local_path("uploads")


def new_upload_folder() -> Path:
    """A fresh folder under ``uploads/`` in the shared storage for one upload (removed when the job that consumes
    it ends); jobs refer to what is saved there by its storage name (``adrenal_site.storage.storage_name``)."""
    folder = local_path(f"uploads/{uuid.uuid4().hex}")
    folder.mkdir(parents=True)
    return folder


def limit_request(request) -> None:
    """Put :class:`LimitedUploadHandler` first on a Django request before its body is read (the store's import
    page and the prediction API), so an upload over the limit is never written whole; the view then finds
    ``request.upload_refused`` set."""
    request.upload_handlers.insert(0, LimitedUploadHandler(request, max_upload_bytes()))


def declared_too_large(request) -> str | None:
    """The refusal for a request whose Content-Length is over the upload limit (plus 1 MB for the form's
    other fields), else None: checked before the body is read."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return "Content-Length is not a number"
    if length > max_upload_bytes() + 1024**2:
        return f"upload of {length / 1024**2:.0f} MB is over the limit of {max_upload_bytes() / 1024**2:.0f} MB"
    return None


MAX_STORED_NAME_BYTES = 120  # a stored upload's name: file systems take 255 bytes, the atomic write adds more


def stored_name(raw: str) -> str:
    """The base name an upload is stored under: ``raw``'s, its stem cut to ``MAX_STORED_NAME_BYTES`` of UTF-8
    with its suffix kept (``.nii.gz`` whole). A browser sends names of up to 255 characters (Django's limit),
    which in UTF-8 and with the atomic write's temporary prefix were longer than a file system takes: an
    OSError, a 500."""
    base = Path(raw).name or "upload"
    suffix = ".nii.gz" if base.lower().endswith(".nii.gz") else Path(base).suffix
    if len(suffix.encode()) > 16:
        suffix = ""
    stem = base[:len(base) - len(suffix)] if suffix else base
    room = MAX_STORED_NAME_BYTES - len(suffix.encode())
    if len(stem.encode()) > room:
        stem = stem.encode()[:room].decode("utf-8", "ignore") or "upload"
    return stem + suffix


def receive_upload(uploaded, *, name: str | None = None, folder: Path | None = None, zip_only: bool = False) -> Path:
    """Save one uploaded file (a Django ``UploadedFile``) under a fresh upload folder (or ``folder``) as
    ``name`` (default: the upload's own base name) under the size limit; a ``.zip`` is checked with
    :func:`check_zip` (nothing is extracted here), a ``.nii``/``.nii.gz`` with :func:`check_nifti`. Returns the saved path. ``UploadRefused`` with the reason;
    the folder is removed on refusal."""
    own = folder is None
    folder = new_upload_folder() if own else folder
    target = folder / stored_name(name or getattr(uploaded, "name", "") or "upload")
    try:
        if zip_only and target.suffix.lower() != ".zip":
            raise UploadRefused(f"{target.name}: upload a .zip")
        save_stream(uploaded.chunks(), target, max_upload_bytes())
        if target.suffix.lower() == ".zip":
            check_zip(target)
        elif target.name.lower().endswith(NIFTI_SUFFIXES):
            check_nifti(target)
    except BaseException:
        if own:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
        raise
    return target


def discard_upload(job_id: int, params: dict) -> list[Path]:
    """Remove what a job's upload left: its extraction folder (:func:`upload_dir`) and the upload folders of
    the paths in ``params`` (``zip_path``, ``path``, ``labels_csv``) that lie under ``MEDIA_ROOT/uploads/``
    (a path elsewhere, e.g. a folder an admin imports from, is never touched). Returns what was removed."""
    root = uploads_root().resolve()
    removed = []
    candidates = [upload_dir(job_id)]
    for key in ("zip_path", "path", "labels_csv"):
        value = params.get(key) if isinstance(params, dict) else None
        if isinstance(value, str) and value:
            p = resolve_location(value).resolve()  # a storage name (or an absolute path outside the store)
            if p.is_relative_to(root) and p != root:
                candidates.append(root / p.relative_to(root).parts[0])  # the upload's own folder
    for folder in candidates:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def upload_dir(job_id: int) -> Path:
    """Where the job ``job_id`` extracts its upload (in the shared storage, on the host that runs it)."""
    return local_path(f"uploads/job-{job_id}")


NIFTI_SUFFIXES = (".nii", ".nii.gz")


def receive_nifti_as_zip(uploaded) -> Path:
    """Save a bare NIfTI upload (``receive_upload``: size limit, fresh folder) and wrap it as a one-file
    ``upload.zip`` beside it, so it takes the zip path of the import job. Returns the zip's path;
    ``UploadRefused`` for a file that is not a NIfTI-1/2 (the folder removed)."""
    return _nifti_as_zip(receive_upload(uploaded, name=_nifti_name(uploaded.name)))


def _nifti_name(name: str) -> str:
    """A safe base name for an uploaded NIfTI (markup, separators and leading dots replaced)."""
    return re.sub(r"[^\w.-]+", "_", Path(name).name).lstrip(".") or "scan.nii.gz"


def check_nifti(path: Path) -> None:
    """Refuse (``UploadRefused``) a file that is not a NIfTI-1/2: its header size field (the first 4 bytes, after
    gunzipping gzip content, whatever the name says: a plain NIfTI named ``.nii.gz`` or a gzipped one named
    ``.nii`` is read as what it is) must be 348 or 540 in either byte order. Reads 4 bytes; the full header is read
    by the importer."""
    try:
        with open_content(path) as fh:
            head = fh.read(4)
    except (OSError, EOFError) as exc:
        raise UploadRefused(f"not a gzipped NIfTI ({exc})") from exc
    if len(head) < 4 or {struct.unpack("<i", head)[0], struct.unpack(">i", head)[0]}.isdisjoint({348, 540}):
        raise UploadRefused("not a NIfTI file (no NIfTI-1 or NIfTI-2 header)")


def _nifti_as_zip(raw: Path) -> Path:
    """A bare NIfTI upload (saved by ``receive_upload``) stored as a one-file ``upload.zip`` beside it, so it
    takes the zip path of the import job (extraction in the job, upload removed after); refuses a file that is
    not a NIfTI-1/2 (gzipped or not, whatever its name says) with ``UploadRefused``, removing the upload's folder."""
    zip_path = raw.parent / "upload.zip"
    try:
        check_nifti(raw)
        with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.write(raw, arcname=raw.name)
    except BaseException:
        shutil.rmtree(raw.parent, ignore_errors=True)
        raise
    raw.unlink()
    return zip_path
