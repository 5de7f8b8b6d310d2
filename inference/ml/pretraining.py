"""Dense pretraining of a lesion detector on images whose lesion pixels are known (generated cohorts).

A lead's cohort has a few dozen patients and labels per scan or per side: too little to learn what a lesion
looks like from scratch, and ImageNet features frozen at a few dozen patients stayed near chance (see
``presets``). Generated cohorts (``synthetic``) know every lesion voxel, so a detector can learn the lesion
itself from pixel-level targets, then be fine-tuned on the lead's cohort by MIL (``inference.ml.mil``). This is
the "pretrain on generated cohorts with exact lesion labels" route of issue 15; the quality benchmark then tests
on seeds and anatomy the pretraining never saw (``benchmarks/bench_model_quality.py``).

- :func:`cell_targets`: a lesion mask ``[N, H, W]`` -> per-cell targets and weights at the network's stride;
- :func:`train_dense`: the network's logit map against those targets (cell BCE, positives weighted up) plus the
  image's max-over-cells logit against "any lesion pixel", AdamW with one-cycle learning rate, batches of a
  fixed share of lesion images, shift/blur/contrast/noise augmentation. Deterministic for a seed on CPU.

Shapes: images ``[N, 3, H, W]`` float in [0, 1] (HU window [-200, 400], three slices as channels), masks
``[N, H, W]`` bool at the same pixels (the centre slice's lesion pixels).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

STRIDE = 8            # LesionNet's output stride
MIN_FRACTION = 0.15   # a cell is a lesion cell when at least this share of its pixels is lesion
UNSURE = 0.0          # cells with some lesion pixels but fewer than MIN_FRACTION are left out of the loss


def cell_targets(masks: torch.Tensor, stride: int = STRIDE, min_fraction: float = MIN_FRACTION
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(targets, weights)`` ``[N, H/stride, W/stride]`` from masks ``[N, H, W]``: target 1 where at least
    ``min_fraction`` of a cell is lesion; weight 0 for cells touched by a lesion below that share (a boundary
    cell is neither clearly lesion nor clearly not), else 1."""
    frac = F.avg_pool2d(masks.float()[:, None], stride)[:, 0]
    target = (frac >= min_fraction).float()
    weight = torch.where((frac > 0) & (frac < min_fraction), UNSURE, 1.0)
    return target, weight


def gaussian_blur(x: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """``x`` ``[B, C, H, W]`` blurred in plane by a Gaussian of ``sigma_px`` (separable, reflect padding)."""
    radius = max(1, int(round(3 * sigma_px)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma_px) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _augment(x: torch.Tensor, m: torch.Tensor, gen: torch.Generator, shift_px: int = 10,
             blur_sigma_px: tuple[float, float] = (0.5, 2.5)) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random shift (wrapping) for images and masks; half the batch blurred in plane (scanners
    reconstruct at 0.6-3 mm and with soft or sharp kernels: a generated scan is sharp); per-image contrast,
    brightness and noise."""
    b = x.shape[0]
    dy, dx = (int(v) for v in torch.randint(-shift_px, shift_px + 1, (2,), generator=gen))
    x = torch.roll(x, (dy, dx), (2, 3))
    m = torch.roll(m, (dy, dx), (1, 2))
    if blur_sigma_px[1] > 0:
        half = torch.randperm(b, generator=gen)[: b // 2]
        lo, hi = blur_sigma_px
        sigma = float(lo + (hi - lo) * torch.rand(1, generator=gen))
        x[half] = gaussian_blur(x[half], sigma)
    scale = 1 + 0.1 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    shift = 0.04 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    x = x * scale + shift + 0.015 * torch.randn(x.shape, generator=gen)
    return x, m


def train_dense(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, *, epochs: int = 8,
                lr: float = 3e-3, batch: int = 64, lesion_share: float = 0.25, pos_weight: float = 10.0,
                image_weight: float = 0.5, seed: int = 0,
                on_epoch: Callable[[int, float, float], None] | None = None) -> list[dict]:
    """Train ``model`` (``features``/``cam`` as :class:`inference.ml.networks.LesionNet`) in place.

    ``images`` ``[N, 3, H, W]`` (float16 or float32), ``masks`` ``[N, H, W]`` bool; each epoch is ``N // batch``
    steps, each batch ``lesion_share`` lesion images (any mask pixel) and the rest drawn from the others.
    Returns the history ``[{"epoch", "loss", "seconds"}]``; ``on_epoch(epoch, loss, seconds)`` after each.
    Raises ValueError when there is no lesion image or no lesion-free one."""
    has = masks.flatten(1).any(dim=1).numpy()
    pos_idx, neg_idx = np.flatnonzero(has), np.flatnonzero(~has)
    if len(pos_idx) == 0 or len(neg_idx) == 0:
        raise ValueError(f"dense pretraining needs lesion and lesion-free images ({len(pos_idx)}/{len(neg_idx)})")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    steps = max(1, len(images) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr / 1.5, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps)
    n_pos = max(1, int(round(batch * lesion_share)))
    history, t0 = [], time.perf_counter()
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for _ in range(steps):
            idx = np.concatenate([pos_idx[torch.randint(len(pos_idx), (n_pos,), generator=gen).numpy()],
                                  neg_idx[torch.randint(len(neg_idx), (batch - n_pos,), generator=gen).numpy()]])
            x, m = _augment(images[idx].float(), masks[idx], gen)
            target, weight = cell_targets(m)
            logit = model.cam(model.features(x))
            cell = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
            loss = (cell * weight * (1 + (pos_weight - 1) * target)).mean()
            image_target = m.flatten(1).any(dim=1).float()
            loss = loss + image_weight * F.binary_cross_entropy_with_logits(logit.amax(dim=(1, 2)), image_target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        entry = {"epoch": epoch + 1, "loss": round(total / steps, 5), "seconds": round(time.perf_counter() - t0, 1)}
        history.append(entry)
        if on_epoch:
            on_epoch(epoch + 1, entry["loss"], entry["seconds"])
    model.eval()
    return history
