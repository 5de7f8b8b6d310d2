"""A promoted per-gland model for verdict tests: ``gland_model()`` makes a finished, evaluated, promoted 2-fold
run of the tests' small CNN that judges each gland on its own crop (``image.layout = side``), its weights under
MEDIA_ROOT (where a worker subprocess finds them). Its output bias is set high, so every image is flagged and
each verdict carries per-side findings and evidence maps; its quality is not these tests' to judge."""
from __future__ import annotations

from pathlib import Path

import pytest

GLAND_CONFIG = {"backbone": "tiny_cnn", "aggregator": "sides", "mil": {"top_k": 1},
                "image": {"layout": "side", "side_px": 32, "pixel_spacing_mm": 1.5, "slice_spacing_mm": 3.0,
                          "stride_mm": 3.0}}


@pytest.fixture
def gland_model(settings):
    def make(name: str = "gland-model", bias: float = 4.0, members=()):
        import torch

        from inference.ml.networks import build_model
        from tests.factories import make_dataset, make_run, make_split

        ds = make_dataset(name, members=members)
        run = make_run(ds, make_split(ds, folds=[[], []]), config=dict(GLAND_CONFIG), operating_value=0.5,
                       objective="youden", promoted=True, version=1, name="gland test model")
        torch.manual_seed(0)
        for fold in run.folds.all():
            fold.weights = f"runs/{run.pk}/fold{fold.fold}/best.pt"
            fold.save(update_fields=["weights"])
            path = Path(settings.MEDIA_ROOT) / fold.weights
            path.parent.mkdir(parents=True, exist_ok=True)
            model = build_model("tiny_cnn")[0]
            with torch.no_grad():
                [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].bias.fill_(bias)
            torch.save(model.state_dict(), path)
        return run

    return make
