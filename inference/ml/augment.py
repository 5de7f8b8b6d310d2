"""Batch augmentation as in the original study (rotation, zoom, contrast, coarse dropout, invert) plus the
anatomy-safe ones the per-gland presets use (a small shift ``translate_px``, an HU window shift
``brightness``, noise ``noise_sd``), each switchable (0 turns it off), on torch tensors ``[B, 3, H, W]`` in
[0, 1]; one grid_sample per batch. Nothing here flips an image: the sides' shared orientation (lateral left,
anterior up) and the slice order are anatomy the model may use."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment_batch(x: torch.Tensor, cfg: dict, generator: torch.Generator) -> torch.Tensor:
    """A randomly augmented copy of ``x`` (random numbers from ``generator``, so seeded runs repeat)."""
    b, _, h, w = x.shape
    g = dict(generator=generator, device="cpu")
    rot = float(cfg.get("rotation_deg", 0) or 0)
    zoom = float(cfg.get("zoom", 0) or 0)
    shift = float(cfg.get("translate_px", 0) or 0)
    if rot or zoom or shift:
        angle = (torch.rand(b, **g) * 2 - 1) * math.radians(rot)
        scale = 1 + (torch.rand(b, **g) * 2 - 1) * zoom
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        aspect = h / w  # rotate in pixel space, not in the normalised [-1, 1] square
        tx = (torch.rand(b, **g) * 2 - 1) * (2 * shift / w) if shift else torch.zeros(b)
        ty = (torch.rand(b, **g) * 2 - 1) * (2 * shift / h) if shift else torch.zeros(b)
        theta = torch.stack([torch.stack([cos, -sin * aspect, tx], 1),
                             torch.stack([sin / aspect, cos, ty], 1)], 1).to(x)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode=str(cfg.get("pad", "zeros")), align_corners=False)
    contrast = float(cfg.get("contrast", 0) or 0)
    if contrast:
        factor = (1 + (torch.rand(b, 1, 1, 1, **g) * 2 - 1) * contrast).to(x)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * factor + mean).clamp(0, 1)
    bright = float(cfg.get("brightness", 0) or 0)
    if bright:
        x = (x + ((torch.rand(b, 1, 1, 1, **g) * 2 - 1) * bright).to(x)).clamp(0, 1)
    noise = float(cfg.get("noise_sd", 0) or 0)
    if noise:
        sd = (torch.rand(b, 1, 1, 1, **g) * noise).to(x)
        x = (x + sd * torch.randn(x.shape, generator=generator, device="cpu").to(x)).clamp(0, 1)
    holes = int(cfg.get("dropout_holes", 0) or 0)
    frac = float(cfg.get("dropout_frac", 0) or 0)
    if holes and frac:
        hh, hw = max(1, int(h * frac)), max(1, int(w * frac / 2))
        ys = torch.randint(0, h - hh + 1, (b, holes), **g)
        xs = torch.randint(0, w - hw + 1, (b, holes), **g)
        rows = torch.arange(h).view(1, 1, h, 1)
        cols = torch.arange(w).view(1, 1, 1, w)
        inside = ((rows >= ys[..., None, None]) & (rows < ys[..., None, None] + hh)
                  & (cols >= xs[..., None, None]) & (cols < xs[..., None, None] + hw)).any(dim=1)
        x = x.masked_fill(inside[:, None].to(x.device), 0.0)
    invert_p = float(cfg.get("invert_p", 0) or 0)
    if invert_p:
        flip = (torch.rand(b, 1, 1, 1, **g) < invert_p).to(x.device)
        x = torch.where(flip, 1 - x, x)
    return x
