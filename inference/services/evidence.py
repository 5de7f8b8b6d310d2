"""Evidence thumbnails: one class-activation map of a verdict (``Prediction.evidence``) drawn over the CT it
was computed on, as a small PNG cached under ``MEDIA_ROOT/evidence/<prediction>/`` (the dashboard's scan rows
and the verdict page show them; the viewer draws the maps itself over its own slices)."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from PIL import Image

from inference.ml import atomic
from inference.ml.evidence import evidence_thumbnail
from inference.ml.volume import load_nifti

from ..models import Prediction

THUMB_PX = (48, 256)  # allowed sizes, px


def thumbnail_path(p: Prediction, index: int, size: int = 96) -> Path:
    """The PNG of evidence map ``index`` of ``p`` at ``size`` x ``size`` px, made on first use.
    Raises IndexError (no such map), ValueError (size out of range, no stored volume)."""
    if not THUMB_PX[0] <= size <= THUMB_PX[1]:
        raise ValueError(f"size must be {THUMB_PX[0]}..{THUMB_PX[1]} px, not {size}")
    evidence = p.evidence or []
    if not 0 <= index < len(evidence):
        raise IndexError(f"prediction {p.pk} has {len(evidence)} evidence map(s); no map {index}")
    out = Path(settings.MEDIA_ROOT) / "evidence" / str(p.pk) / f"{index}-{size}.png"
    if out.is_file():
        return out
    vol_row = getattr(p.series, "volume", None)
    if vol_row is None or not vol_row.file:
        raise ValueError(f"series {p.series_id} has no stored volume")
    rgb = evidence_thumbnail(load_nifti(Path(settings.MEDIA_ROOT) / vol_row.file.name), evidence[index], size=size)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(out) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return out
