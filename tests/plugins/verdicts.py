"""A promoted per-gland model for verdict tests: ``gland_model()`` makes a finished, evaluated, promoted 2-fold
run of the tests' small CNN that judges each gland on its own crop (``image.layout = side``), its weights under
MEDIA_ROOT (where a worker subprocess finds them). Its output bias is set high, so every image is flagged and
each verdict carries per-side findings and evidence maps; its quality is not these tests' to judge."""
from __future__ import annotations


import pytest

GLAND_CONFIG = {"backbone": "tiny_cnn", "aggregator": "sides", "mil": {"top_k": 1},
                "image": {"layout": "side", "side_px": 32, "pixel_spacing_mm": 1.5, "slice_spacing_mm": 3.0,
                          "stride_mm": 3.0}}


@pytest.fixture
def gland_model(settings):
    def make(name: str = "gland-model", bias: float = 4.0, members=()):
        from tests.factories import make_dataset, make_promoted_tiny_run

        return make_promoted_tiny_run(make_dataset(name, members=members), dict(GLAND_CONFIG), bias=bias,
                                      objective="youden", name="gland test model")

    return make
