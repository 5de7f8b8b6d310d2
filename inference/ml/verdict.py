"""A verdict for one scan from a fold ensemble: 2.5D images in, probability, fraction, per-side scores,
flagged slices and per-slice scores out.

The 2.5D builder and the ensemble loader of the training area (``inference.ml.images25d.build_images``
and ``inference.ml.training.load_ensemble``) are used when present; the small fallbacks here follow the
same contract (images ``[N, 3, H, 2W]`` float in [0, 1], patient right on the image left; ``predict``
returning ``[N, n_folds]`` probabilities) so the verdict path works before or without them.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .geometry import Box, lps_to_voxel
from .operating_value import IMAGE_VOTE, aggregate
from .volume import Volume

HU_WINDOW = (-200.0, 400.0)


# --- 2.5D images (fallback builder) ----------------------------------------------------------------------

def _crop_side(volume: Volume, box: Box, side_px: int, z_mm: np.ndarray) -> np.ndarray:
    """Resample one box to ``[len(z_mm), side_px, side_px]`` HU: rows run anterior->posterior (LPS y),
    columns run patient right->left (LPS x), so the patient's right is on the image left."""
    xs = np.linspace(box.lps_min[0], box.lps_max[0], side_px)
    ys = np.linspace(box.lps_min[1], box.lps_max[1], side_px)
    zz, yy, xx = np.meshgrid(z_mm, ys, xs, indexing="ij")
    ijk = lps_to_voxel(volume.affine, np.stack([xx, yy, zz], axis=-1).reshape(-1, 3))
    coords = ijk[:, ::-1].T  # k, j, i
    out = ndimage.map_coordinates(volume.array, coords, order=1, mode="constant", cval=-1024.0, prefilter=False)
    return out.reshape(len(z_mm), side_px, side_px)


def build_images_fallback(volume: Volume, boxes: dict[str, Box], side_px: int = 120,
                          slice_mm: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Right|left crops joined (240x120 by default), HU clipped to [-200, 400] scaled to [0, 1], every 3
    consecutive resampled slices as the 3 channels. Returns ``(images [N, 3, side, 2 side], z_mm [N])``."""
    lo = max(boxes["R"].lps_min[2], boxes["L"].lps_min[2])
    hi = min(boxes["R"].lps_max[2], boxes["L"].lps_max[2])
    if hi - lo < 2 * slice_mm:
        raise ValueError(f"boxes overlap over {hi - lo:.1f} mm in z: too thin for 2.5D images")
    z = np.arange(lo, hi + 1e-6, slice_mm)
    joined = np.concatenate([_crop_side(volume, boxes["R"], side_px, z), _crop_side(volume, boxes["L"], side_px, z)],
                            axis=2)
    scaled = (np.clip(joined, *HU_WINDOW) - HU_WINDOW[0]) / (HU_WINDOW[1] - HU_WINDOW[0])
    images = np.stack([scaled[:-2], scaled[1:-1], scaled[2:]], axis=1).astype(np.float32)
    return images, z[1:-1]


def build_images(volume: Volume, boxes: dict[str, Box], config: dict) -> tuple[np.ndarray, np.ndarray]:
    """The training area's builder when present (same code for training and inference), else the fallback."""
    try:
        from . import images25d  # type: ignore[attr-defined]
    except ImportError:
        images25d = None
    if images25d is not None and hasattr(images25d, "build_images"):
        images, z = images25d.build_images(volume, boxes, config)
        return np.asarray(images, np.float32), np.asarray(z, float)
    return build_images_fallback(volume, boxes, int(config.get("side_px", 120)),
                                 float(config.get("slice_spacing_mm", config.get("slice_mm", 3.0))))


# --- the fold ensemble (fallback loader) -----------------------------------------------------------------

def make_model(backbone: str = "efficientnet_b1"):
    """A torchvision backbone with one logit out (random init)."""
    import torch
    import torchvision

    ctor = getattr(torchvision.models, backbone)
    model = ctor(weights=None)
    if hasattr(model, "classifier"):
        last = model.classifier[-1]
        model.classifier[-1] = torch.nn.Linear(last.in_features, 1)
    else:
        model.fc = torch.nn.Linear(model.fc.in_features, 1)
    return model.eval()


class FoldEnsemble:
    """Fold models run together: all images (and their side-blanked copies) in batches, in inference mode."""

    def __init__(self, models: Sequence, batch_size: int = 64, device: str | None = None):
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.models = [m.to(self.device).eval().to(memory_format=torch.channels_last) for m in models]
        self.batch_size = batch_size

    def predict(self, images: np.ndarray) -> np.ndarray:
        import torch

        out = np.empty((len(images), len(self.models)), np.float32)
        with torch.inference_mode():
            x_all = torch.from_numpy(np.ascontiguousarray(images, np.float32))
            for start in range(0, len(images), self.batch_size):
                x = x_all[start:start + self.batch_size].to(self.device).contiguous(memory_format=torch.channels_last)
                for f, model in enumerate(self.models):
                    out[start:start + len(x), f] = torch.sigmoid(model(x).float().reshape(-1)).cpu().numpy()
        return out


def load_state(path: str | os.PathLike):
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in state and isinstance(state[key], dict):
                return state[key]
    return state


def load_ensemble(weight_paths: Sequence[str | os.PathLike], config: dict):
    """The training area's loader when present, else torchvision backbones with the stored weights."""
    try:
        from . import training  # type: ignore[attr-defined]
    except ImportError:
        training = None
    if training is not None and hasattr(training, "load_ensemble"):
        try:
            return training.load_ensemble(list(weight_paths), config)
        except Exception as exc:  # noqa: BLE001 - weights in this module's format; re-raised if not
            try:
                return _load_plain(weight_paths, config)
            except Exception:  # noqa: BLE001
                raise exc from None
    return _load_plain(weight_paths, config)


def _load_plain(weight_paths: Sequence[str | os.PathLike], config: dict) -> FoldEnsemble:
    models = []
    for p in weight_paths:
        m = make_model(config.get("backbone", "efficientnet_b1"))
        m.load_state_dict(load_state(p))
        models.append(m)
    return FoldEnsemble(models)


# --- the verdict ----------------------------------------------------------------------------------------

@dataclass
class ScanVerdict:
    probability: float
    fraction: float
    verdict: str
    operating_value: float
    sides: dict[str, float]
    flagged_slices_mm: list[float]
    slice_scores: list[list[float]]
    fold_probabilities: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def blank_side(images: np.ndarray, side: str) -> np.ndarray:
    """Copies with one side's half set to 0 (the bottom of the HU window): right is the image's left half."""
    out = images.copy()
    half = images.shape[-1] // 2
    if side == "R":
        out[..., :half] = 0.0
    else:
        out[..., half:] = 0.0
    return out


def scan_verdict(images: np.ndarray, z_mm: np.ndarray, ensemble, operating_value: float,
                 aggregator: str = "fraction", with_sides: bool = True) -> ScanVerdict:
    """Run the ensemble once over the images and, for per-side scores, over copies with the other side
    blanked (one batched pass); verdict by the original rule at ``operating_value``."""
    n = len(images)
    if n == 0:
        raise ValueError("no 2.5D images to judge")
    batch = np.concatenate([images, blank_side(images, "L"), blank_side(images, "R")]) if with_sides else images
    probs = np.asarray(ensemble.predict(batch), float)
    if probs.ndim == 1:
        probs = probs[:, None]
    mean = probs.mean(axis=1)
    p_img = mean[:n]
    score = aggregate(p_img, aggregator)
    sides = {}
    if with_sides:
        sides = {"R": round(aggregate(mean[n:2 * n], aggregator), 4), "L": round(aggregate(mean[2 * n:], aggregator), 4)}
    return ScanVerdict(
        probability=round(float(p_img.mean()), 6),
        fraction=round(aggregate(p_img, "fraction"), 6),
        verdict="abnormal" if score >= operating_value else "normal",
        operating_value=float(operating_value),
        sides=sides,
        flagged_slices_mm=[round(float(z), 2) for z, p in zip(z_mm, p_img) if p >= IMAGE_VOTE],
        slice_scores=[[round(float(z), 2), round(float(p), 4)] for z, p in zip(z_mm, p_img)],
        fold_probabilities=[round(float(v), 6) for v in probs[:n].mean(axis=0)],
    )
