"""Server folders an admin may import from through the API: only paths inside ``settings.ADRENAL_IMPORT_ROOTS``
(symlinks resolved first, so a link cannot lead outside). The ``import_studies`` command, run by whoever has
a shell on the server, is not limited."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings


MAX_SHOWN = 200  # characters of a refused path a refusal repeats


class OutsideImportRoots(ValueError):
    """The path is not inside a configured import root; the message names the roots."""


def import_roots() -> list[Path]:
    return [Path(r).resolve() for r in settings.ADRENAL_IMPORT_ROOTS]


def allowed_import_path(raw: str, what: str = "path") -> Path:
    """``raw`` resolved, when it exists inside an import root; else OutsideImportRoots (or FileNotFoundError:
    missing, or no path the server can have, a name too long or ``~`` of no user) saying why, without telling
    whether a path outside the roots exists."""
    roots = import_roots()
    if not roots:
        raise OutsideImportRoots("importing from server folders is turned off (set ADRENAL_IMPORT_ROOTS)")
    shown = raw if len(raw) <= MAX_SHOWN else raw[:MAX_SHOWN] + "..."  # the path as the refusal repeats it
    try:
        path = Path(raw).expanduser()
    except RuntimeError:  # ~name of no user on this server
        raise FileNotFoundError(f"{shown} does not exist on the server") from None
    if not path.is_absolute():
        path = roots[0] / path  # relative paths are taken inside the first root
    resolved = path.resolve()
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise OutsideImportRoots(f"{what} must be inside an import root ({', '.join(str(r) for r in roots)})")
    try:
        exists = resolved.exists()
    except OSError as exc:  # a name longer than the file system takes (ENAMETOOLONG), not only a missing one
        raise FileNotFoundError(f"{shown} cannot be a path on the server ({exc.strerror or exc})") from None
    if not exists:
        raise FileNotFoundError(f"{shown} does not exist on the server")
    return resolved
