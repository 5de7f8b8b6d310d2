"""Backbones with one logit out: torchvision EfficientNet-B0/B1/B2, ResNet-18/50, and a tiny CNN for tests.

ImageNet weights are used only when a local file has them (``ADRENAL_WEIGHTS_DIR`` or the torch hub cache
``<hub>/checkpoints/``); nothing is ever downloaded. ``build_model`` says which file it used ('' = random).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

BACKBONES = ("efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "resnet18", "resnet50", "tiny_cnn")


class TinyCNN(nn.Module):
    """A few conv layers: enough to learn a bright blob, fast enough for tests."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveMaxPool2d(1),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def imagenet_file(backbone: str) -> Path | None:
    """The local ImageNet weights file of a torchvision backbone, or None."""
    if backbone == "tiny_cnn":
        return None
    import torchvision

    name = Path(torchvision.models.get_model_weights(backbone).DEFAULT.url).name
    dirs = [os.environ.get("ADRENAL_WEIGHTS_DIR", ""), str(Path(torch.hub.get_dir()) / "checkpoints")]
    for d in dirs:
        if d and (Path(d) / name).is_file():
            return Path(d) / name
    return None


def build_model(backbone: str, pretrained: str = "none") -> tuple[nn.Module, str]:
    """``(model, weights file used or '')``. ``pretrained``: 'auto' (local ImageNet file when present),
    'none', or a path to a state dict."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")
    if backbone == "tiny_cnn":
        return TinyCNN(), ""
    import torchvision

    model = getattr(torchvision.models, backbone)(weights=None)
    used = ""
    source = imagenet_file(backbone) if pretrained == "auto" else (Path(pretrained) if pretrained not in ("", "none") else None)
    if source is not None:
        if not source.is_file():
            raise ValueError(f"pretrained weights {source} not found")
        model.load_state_dict(torch.load(source, map_location="cpu", weights_only=True))
        used = str(source)
    if hasattr(model, "classifier"):
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, 1)
    else:
        model.fc = nn.Linear(model.fc.in_features, 1)
    return model, used
