"""Training presets: ``paper`` (the original study), ``fast`` (CPU demo, minutes on 2 cores), ``tiny`` (tests)."""
from __future__ import annotations

import copy

AUGMENT_ALL = {"rotation_deg": 15.0, "zoom": 0.1, "contrast": 0.2, "dropout_holes": 4, "dropout_frac": 0.12,
               "invert_p": 0.1}

PRESETS: dict[str, dict] = {
    "paper": {"backbone": "efficientnet_b1", "input_side_px": 120, "batch_size": 64, "epochs": 8, "lr": 1e-4,
              "alpha": 0.3, "pretrained": "auto", "augment": dict(AUGMENT_ALL)},
    "fast": {"backbone": "resnet18", "input_side_px": 48, "batch_size": 32, "epochs": 6, "lr": 1e-3,
             "alpha": 0.3, "pretrained": "auto", "augment": dict(AUGMENT_ALL, invert_p=0.0)},
    "tiny": {"backbone": "tiny_cnn", "input_side_px": 16, "batch_size": 16, "epochs": 3, "lr": 3e-3,
             "alpha": 0.3, "pretrained": "none", "augment": {"rotation_deg": 10.0, "zoom": 0.0, "contrast": 0.1,
                                                               "dropout_holes": 0, "dropout_frac": 0.0,
                                                               "invert_p": 0.0}},
}
COMMON = {"seed": 0, "n_folds": 5, "test_fraction": 0.2,
          "image": {"side_px": 120, "pixel_spacing_mm": 0.7, "slice_spacing_mm": 3.0}}


def preset_config(name: str, overrides: dict | None = None) -> dict:
    """The full configuration of a preset with ``overrides`` applied (nested dicts merged)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    cfg = copy.deepcopy(COMMON) | copy.deepcopy(PRESETS[name]) | {"preset": name}
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = cfg[key] | value
        else:
            cfg[key] = value
    return cfg
