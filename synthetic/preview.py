"""PNG montage of a scan for eyeballing: axial slices through each gland and a coronal slice."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from inference.ml.geometry import lps_to_voxel
from inference.ml.volume import Volume


def _win(a: np.ndarray, centre: float = 40, width: float = 400) -> np.ndarray:
    return (np.clip((a.astype(np.float32) - (centre - width / 2)) / width, 0, 1) * 255).astype(np.uint8)


def canonical(volume: Volume) -> Volume:
    """The same volume with its axes flipped so that i, j, k run along +x, +y, +z (axis-aligned volumes)."""
    a = np.array(volume.affine, float)
    arr = volume.array
    for axis_ijk in range(3):
        if a[axis_ijk, axis_ijk] < 0:
            n = arr.shape[2 - axis_ijk]
            arr = np.flip(arr, axis=2 - axis_ijk)
            a[:3, 3] = a[:3, 3] + a[:3, axis_ijk] * (n - 1)
            a[:3, axis_ijk] = -a[:3, axis_ijk]
    return Volume(np.ascontiguousarray(arr), a)


def montage(volume: Volume, glands: dict, title: str, path: Path, size: int = 320) -> Path:
    """Axial through each gland box centre (box drawn), coronal through the glands; 40/400 window;
    radiological display (patient's right on the image's left, anterior up) whatever the affine."""
    volume = canonical(volume)
    arr = volume.array
    nk, nj, ni = arr.shape
    sp = volume.spacing
    tiles = []
    centres = [b.centre for b in glands.values() if b is not None]
    for side in ("R", "L"):
        box = glands.get(side)
        k = int(round(lps_to_voxel(volume.affine, box.centre)[2])) if box is not None else nk // 2
        img = Image.fromarray(_win(arr[int(np.clip(k, 0, nk - 1))])).convert("RGB")
        if box is not None:
            lo = lps_to_voxel(volume.affine, box.lps_min)
            hi = lps_to_voxel(volume.affine, box.lps_max)
            ImageDraw.Draw(img).rectangle([min(lo[0], hi[0]) - 3, min(lo[1], hi[1]) - 3, max(lo[0], hi[0]) + 3,
                                           max(lo[1], hi[1]) + 3], outline=(255, 200, 0))
        ImageDraw.Draw(img).text((6, 6), f"{side} axial k={k}", fill=(255, 255, 0))
        tiles.append(img.resize((size, size)))
    j = int(round(np.mean([lps_to_voxel(volume.affine, c)[1] for c in centres]))) if centres else nj // 2
    cor = _win(arr[::-1, int(np.clip(j, 0, nj - 1)), :])
    h = max(1, int(round(nk * sp[2] / sp[0] * size / ni)))
    tiles.append(Image.fromarray(cor).convert("RGB").resize((size, h)))
    height = max(size, h)
    out = Image.new("RGB", (size * 3, height + 18))
    for n, t in enumerate(tiles):
        out.paste(t, (n * size, 18))
    ImageDraw.Draw(out).text((4, 2), title, fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path
