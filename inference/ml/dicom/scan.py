"""Walking an import folder: every regular file, in a stable order, hidden files and folders left out."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def scan_files(root: str | os.PathLike) -> Iterator[Path]:
    """Every file under ``root`` (or ``root`` itself when it is a file), sorted, skipping dot-files and
    symbolic links that leave ``root``."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    real_root = root.resolve()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                continue
            if path.is_file():
                yield path
