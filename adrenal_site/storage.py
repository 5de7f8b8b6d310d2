"""The one storage layer for the files the web app and its workers share.

Volumes, viewer slabs, previews, 2.5D images, run artifacts and model weights, DICOM results and uploads all live
in Django's default storage (``settings.STORAGES["default"]``: a ``FileSystemStorage`` at ``MEDIA_ROOT``, by
default ``$ADRENAL_DATA_DIR/media``). The database and every task message hold only **storage names**: paths
relative to that root with ``/`` separators (``volumes/3f/…nii.gz``, ``runs/7/fold0/best.pt``,
``uploads/<hex>/upload.zip``). Each process turns a name into a path on its own host with :func:`local_path`,
so a worker on another machine finds the same files wherever the shared filesystem is mounted there:

    web host:    ADRENAL_DATA_DIR=/srv/adrenal        -> /srv/adrenal/media/runs/7/fold0/best.pt
    GPU host:    ADRENAL_DATA_DIR=/mnt/nfs/adrenal    -> /mnt/nfs/adrenal/media/runs/7/fold0/best.pt

NIfTI readers, numpy memmaps and torch need real local paths, so the supported multi-host setup is a shared
filesystem (NFS, CephFS, a docker volume) mounted on every host, at any mount point (README "Workers on other
machines"). The Django-free core ``inference.ml`` never sees names: callers hand it the local paths made here.

Errors: :class:`StorageNameError` (a ``ValueError``) for an absolute name, a name that leaves the root, or a
local path outside the root.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import Storage, storages


class StorageNameError(ValueError):
    """A storage name is absolute or leaves the storage root, or a local path is not under it."""


def file_storage() -> Storage:
    """The shared file storage (``STORAGES["default"]``; follows ``MEDIA_ROOT``, also under ``override_settings``)."""
    return storages["default"]


def storage_root() -> Path:
    """This host's local path of the storage root (``MEDIA_ROOT``)."""
    return Path(file_storage().path(""))


def local_path(name: str | os.PathLike) -> Path:
    """The local path on this host of the stored file or folder ``name`` (a storage name, e.g.
    ``"runs/7/fold0/best.pt"``); it need not exist yet. Raises :class:`StorageNameError` for an empty or
    absolute name or one that leaves the root (``..``)."""
    text = os.fspath(name)
    if not text or text.startswith(("/", "\\")) or Path(text).is_absolute():
        raise StorageNameError(f"{text!r} is not a storage name (a path relative to the storage root)")
    try:
        return Path(file_storage().path(text))
    except SuspiciousFileOperation as exc:
        raise StorageNameError(f"storage name {text!r} leaves the storage root") from exc


def storage_name(path: str | os.PathLike) -> str:
    """The storage name (relative, ``/``-separated) of ``path``, a local path under this host's storage root.
    Raises :class:`StorageNameError` when it is not under the root."""
    root = storage_root()
    candidate = Path(os.path.abspath(path))
    for p, r in ((candidate, Path(os.path.abspath(root))), (candidate.resolve(), root.resolve())):
        if p.is_relative_to(r) and p != r:
            return PurePosixPath(*p.relative_to(r).parts).as_posix()
    raise StorageNameError(f"{path} is not under the storage root {root}")


def location_for_task(path: str | os.PathLike) -> str:
    """How a job's message refers to a folder or file it reads: its storage name when it is under the storage
    root (uploads, anything put under ``MEDIA_ROOT``), else its absolute path, for a source outside the store (an
    admin's import folder), which a worker on another host must see at the same path. ``path`` is a local path
    (a relative one is taken from the current directory). See :func:`resolve_location`."""
    try:
        return storage_name(path)
    except StorageNameError:
        return os.path.abspath(path)


def resolve_location(location: str | os.PathLike) -> Path:
    """The local path of a job's ``location`` (:func:`location_for_task`): a storage name resolved on this host,
    an absolute path taken as is."""
    text = os.fspath(location)
    return Path(text) if Path(text).is_absolute() else local_path(text)


def discard_stored(*names: str, unless_used_by=()) -> None:
    """Remove the stored files or folders ``names`` (storage names; '' and missing ones skipped), except a name
    that a row of ``unless_used_by`` (querysets of ``{"name": ..}`` lookups, as ``(queryset, field)``) still holds.
    The one way a deleted row's files go (``post_delete`` receivers queue it on commit): a patient, series, run or
    verdict deleted in the admin leaves no CT, image or weights behind."""
    for name in names:
        if not name:
            continue
        if any(qs.filter(**{field: name}).exists() for qs, field in unless_used_by):
            continue
        try:
            path = local_path(name)
        except StorageNameError:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@contextmanager
def discard_stored_on_error(*names: str, unless_used_by=()):
    """Around the writing of the rows that will hold the just-stored files ``names``: when it raises (the rows'
    parent deleted meanwhile, a cancelled job, a failed write), the files go (:func:`discard_stored`, keeping a
    name that a row of ``unless_used_by`` already held) and the error goes on, so no file is left that no row
    holds."""
    try:
        yield
    except BaseException:
        discard_stored(*names, unless_used_by=unless_used_by)
        raise
