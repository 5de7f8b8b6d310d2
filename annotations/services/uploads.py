"""Zip uploads: streamed to disk under a size limit, checked, and extracted without leaving their folder."""
from __future__ import annotations

import shutil
import uuid
import zipfile
from pathlib import Path, PurePosixPath

from django.core.files.uploadhandler import FileUploadHandler, StopUpload

from adrenal_site.storage import local_path
from inference.ml.atomic import atomic_path

MAX_ENTRIES = 200_000


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


def check_zip(path: Path, max_bytes: int) -> list[zipfile.ZipInfo]:
    """The members of a zip upload; refuses non-zip files, absolute or ``..`` entries, and archives that
    would expand beyond ``max_bytes``."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            head = fh.read(132)
        kind = "a single DICOM file" if head[128:132] == b"DICM" else "not a zip archive"
        raise UploadRefused(f"the upload is {kind}; upload a .zip of the study folders")
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadRefused(f"the zip archive is damaged: {exc}") from exc
    if len(members) > MAX_ENTRIES:
        raise UploadRefused(f"the zip has {len(members)} entries (limit {MAX_ENTRIES})")
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
    total = sum(m.file_size for m in members)
    if total > max_bytes:
        raise UploadRefused(f"the zip expands to {total / 1024**2:.0f} MB, over the limit of {max_bytes / 1024**2:.0f} MB")
    return members


def extract_zip(path: Path, dest: Path, max_bytes: int) -> Path:
    """Extract a checked zip into ``dest`` (emptied first, so a rerun extracts the same tree)."""
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


def new_upload_folder() -> Path:
    """A fresh folder under ``uploads/`` in the shared storage for one upload (removed by the job that consumes
    it); jobs refer to what is saved there by its storage name (``adrenal_site.storage.storage_name``)."""
    folder = local_path(f"uploads/{uuid.uuid4().hex}")
    folder.mkdir(parents=True)
    return folder


def upload_dir(job_id: int) -> Path:
    """Where the job ``job_id`` extracts its upload (in the shared storage, on the host that runs it)."""
    return local_path(f"uploads/job-{job_id}")
