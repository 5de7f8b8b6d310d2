"""Masked normalised cross-correlation of a 3-D template over a search region, through FFTs.

Padfield D., "Masked object registration in the Fourier domain", IEEE Trans Image Process 2012: the NCC of the
template and the image over their overlap only, so voxels outside the scan's field of view (a slab, a cut
volume) or outside the atlas count for nothing instead of as air.
"""
from __future__ import annotations

import numpy as np
from scipy import fft


def _corr(a_f: np.ndarray, b: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Full cross-correlation (via the FFT of ``a`` already taken) with ``b``: out[u] = sum_x a[x + u] b[x]."""
    b_f = fft.rfftn(b[::-1, ::-1, ::-1], shape, workers=2)
    return fft.irfftn(a_f * b_f, shape, workers=2)


def masked_ncc(image: np.ndarray, image_mask: np.ndarray, template: np.ndarray, template_mask: np.ndarray,
               min_overlap: float = 0.5) -> np.ndarray:
    """NCC for every placement of ``template`` fully or partly inside ``image``, ``[d0, d1, d2]``
    = offset of the template's first voxel in the image, for offsets 0 .. image - template (the "valid" placements).
    Placements whose overlap of both masks is below ``min_overlap`` of the template mask get -1."""
    f = np.where(image_mask, image, 0.0).astype(np.float32)
    t = np.where(template_mask, template, 0.0).astype(np.float32)
    mf, mt = image_mask.astype(np.float32), template_mask.astype(np.float32)
    shape = tuple(int(fft.next_fast_len(a + b - 1)) for a, b in zip(f.shape, t.shape))
    f_f, f2_f, mf_f = (fft.rfftn(x, shape, workers=2) for x in (f, f * f, mf))
    n = _corr(mf_f, mt, shape)
    ft = _corr(f_f, t, shape)
    fm = _corr(f_f, mt, shape)
    mt_ = _corr(mf_f, t, shape)
    f2m = _corr(f2_f, mt, shape)
    mt2 = _corr(mf_f, t * t, shape)
    # valid placements: the template's first voxel at offset u lands at full-correlation index u + T - 1
    sl = tuple(slice(b - 1, a) for a, b in zip(f.shape, t.shape))
    n, ft, fm, mt_, f2m, mt2 = (x[sl].astype(np.float64) for x in (n, ft, fm, mt_, f2m, mt2))
    n_safe = np.maximum(n, 1.0)
    num = ft - fm * mt_ / n_safe
    den = np.sqrt(np.maximum(f2m - fm * fm / n_safe, 0) * np.maximum(mt2 - mt_ * mt_ / n_safe, 0))
    out = np.where(den > 1e-6 * max(float(den.max()), 1e-12), num / np.maximum(den, 1e-12), 0.0)
    out[n < min_overlap * mt.sum()] = -1.0
    return np.clip(out, -1.0, 1.0)


def peak(score: np.ndarray) -> tuple[np.ndarray, float]:
    """Sub-voxel position (parabolic fit per axis) and value of the maximum."""
    idx = np.unravel_index(int(np.argmax(score)), score.shape)
    pos = np.asarray(idx, float)
    for ax in range(3):
        i = idx[ax]
        if 0 < i < score.shape[ax] - 1:
            lo = list(idx)
            hi = list(idx)
            lo[ax] -= 1
            hi[ax] += 1
            a, b, c = score[tuple(lo)], score[idx], score[tuple(hi)]
            d = a - 2 * b + c
            if d < 0:
                pos[ax] += float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))
    return pos, float(score[idx])
