"""Training configuration overrides are checked in one place (``inference.ml.presets``): every key against the
settings the trainers read, sections stay mappings, every number within its documented range; a violation is
one ConfigError (a ValueError) naming the field path and what is allowed."""
from __future__ import annotations

import math

import pytest

from inference.ml.presets import (BACKBONES, LITE_BLOCKS, PRESETS, SETTINGS, ConfigError, Number, Section,
                                  check_config, check_run_overrides, expand_overrides, preset_config)


def refused(preset: str, overrides: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        preset_config(preset, overrides)
    assert isinstance(info.value, ValueError)
    return info.value


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_within_its_own_ranges(name):
    cfg = preset_config(name)
    check_config(cfg)
    assert cfg["preset"] == name


def test_every_range_says_why():
    def walk(fields, prefix=""):
        for key, spec in fields.items():
            assert spec.why.strip(), f"{prefix}{key} has no reason"
            if isinstance(spec, Section):
                yield from walk(spec.fields, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", spec
    numbers = {path: spec for path, spec in walk(SETTINGS) if isinstance(spec, Number)}
    assert numbers["epochs"].lo == 1 and numbers["epochs"].hi == 1000  # as the Models page allows
    assert numbers["batch_size"].lo >= 1 and numbers["mil.top_k"].lo == 1 and numbers["n_folds"].lo == 2


def test_the_overrides_the_tests_and_benchmarks_use_still_work():
    cfg = preset_config("tiny", {"epochs": 3, "lr": 0.01, "batch_size": 16, "n_folds": 3, "supervision": "mil",
                                 "aggregator": "sides", "calibration": "temperature",
                                 "mil": {"top_k": 1, "steps_per_epoch": 6},
                                 "image": {"layout": "side", "side_px": 16, "pixel_spacing_mm": 2.0,
                                           "slice_spacing_mm": 3.0, "stride_mm": 3.0}})
    assert cfg["image"]["side_px"] == 16 and cfg["mil"] == {"top_k": 1, "steps_per_epoch": 6}
    cfg = preset_config("lite", {"epochs": 6, "input_side_px": 32, "runtime": "torch",
                                 "head": {"kind": "local", "block": 10, "hidden": 8},
                                 "mil": {"top_k": 1, "steps_per_epoch": 8, "warmup_epochs": 2}})
    assert cfg["head"] == {"kind": "local", "block": 10, "hidden": 8} and cfg["mil"]["hard_pool"] == 0.2
    assert preset_config("tiny", {"freeze": "backbone", "mil": {"top_k": 1}})["freeze"] == "backbone"
    assert preset_config("fast", {"freeze": "none", "auto_promote": True})["auto_promote"] is True
    # dotted names are the section's settings (train --set mil.top_k=1), merged into the preset's section
    cfg = preset_config("fast", {"mil.top_k": 1, "image.stride_mm": 0})
    assert cfg["mil"]["top_k"] == 1 and cfg["mil"]["steps_per_epoch"] == 40 and cfg["image"]["stride_mm"] == 0
    assert expand_overrides({"mil": {"top_k": 1}, "mil.train_k": 1}) == {"mil": {"top_k": 1, "train_k": 1}}


@pytest.mark.parametrize("overrides,field,says", [
    ({"nonexistent": 1}, "nonexistent", "unknown setting"),
    ({"epoch": 3}, "epoch", "did you mean epochs"),
    ({"mil": {"topk": 1}}, "mil.topk", "did you mean mil.top_k"),
    ({"image.side": 96}, "image.side", "did you mean image.side_px"),
    ({"preset": "paper"}, "preset", "cannot be overridden"),
    ({"lesion_markers": {}}, "lesion_markers", "cannot be overridden"),
    ({"left_out": []}, "left_out", "cannot be overridden"),
])
def test_an_unknown_key_is_refused_naming_it_and_close_ones(overrides, field, says):
    err = refused("fast", overrides)
    assert err.field == field and str(err).startswith(f"{field}: ") and says in str(err)
    if "unknown" in says:
        assert "top_k" in str(err) or "epochs" in str(err) or "side_px" in str(err)  # the valid ones listed


@pytest.mark.parametrize("section", ["image", "mil", "augment", "head"])
@pytest.mark.parametrize("value", ["x", 3, [1], None, True])
def test_a_plain_value_cannot_replace_a_section(section, value):
    err = refused("lite", {section: value})
    assert err.field == section and "mapping" in str(err)


@pytest.mark.parametrize("overrides,field,allowed", [
    ({"epochs": -1}, "epochs", "from 1 to 1000"),
    ({"epochs": 1001}, "epochs", "from 1 to 1000"),
    ({"batch_size": 0}, "batch_size", "from 2 to"),
    ({"mil": {"top_k": 0}}, "mil.top_k", "from 1 to"),
    ({"test_fraction": 1.5}, "test_fraction", "(0, 1)"),
    ({"test_fraction": 0}, "test_fraction", "(0, 1)"),
    ({"n_folds": 1}, "n_folds", "from 2 to 20"),
    ({"n_folds": 0}, "n_folds", "from 2 to 20"),
    ({"lr": 0}, "lr", "(0, 1]"),
    ({"lr": math.inf}, "lr", "(0, 1]"),
    ({"lr": math.nan}, "lr", "(0, 1]"),
    ({"seed": -1}, "seed", "from 0 to"),
    ({"seed": 10**400}, "seed", "from 0 to"),
    ({"image": {"side_px": 4096}}, "image.side_px", "from 16 to 512"),
    ({"image": {"pixel_spacing_mm": 0}}, "image.pixel_spacing_mm", "[0.1, 5]"),
    ({"image.stride_mm": 0.1}, "image.stride_mm", "or 0"),
    ({"input_side_px": 8}, "input_side_px", "from 16 to 512"),
    ({"mil": {"pos_fraction": 1.0}}, "mil.pos_fraction", "(0, 1)"),
    ({"augment": {"zoom": 1.0}}, "augment.zoom", "[0, 0.5]"),
])
def test_a_number_out_of_range_is_refused_naming_the_field_and_the_range(overrides, field, allowed):
    err = refused("fast", overrides)
    assert err.field == field and allowed in str(err) and "out of range" in str(err), str(err)


@pytest.mark.parametrize("overrides,field", [
    ({"epochs": "3"}, "epochs"), ({"epochs": 3.0}, "epochs"), ({"lr": "0.1"}, "lr"),
    ({"mil": {"select": 1}}, "mil.select"),
    ({"image": {"layout": "both"}}, "image.layout"), ({"backbone": "vgg"}, "backbone"), ({"amp": 1}, "amp"),
    ({"pretrained": "/no/such/weights.pt"}, "pretrained"), ({"augment": {"pad": "wrap"}}, "augment.pad"),
])
def test_a_value_of_the_wrong_kind_is_refused(overrides, field):
    err = refused("fast", overrides)
    assert err.field == field, str(err)


@pytest.mark.parametrize("overrides,field", [
    ({"epochs": True}, "epochs"), ({"batch_size": False}, "batch_size"), ({"lr": True}, "lr"),
    ({"mil": {"top_k": True}}, "mil.top_k"),
])
def test_true_or_false_is_not_a_number(overrides, field):
    err = refused("fast", overrides)
    assert err.field == field and ("not true" in str(err) or "not false" in str(err)), str(err)


@pytest.mark.parametrize("preset,overrides,field,says", [
    ("fast", {"head": {"kind": "local"}}, "head.kind", "lesion_net takes head.tune_last and head.reference_cells only"),
    ("lite", {"backbone": "lesion_net"}, "backbone", "lesion_net takes head.tune_last and head.reference_cells only"),
    ("lite", {"backbone": "efficientnet_lite0", "head": {"block": 18}}, "head.block", "blocks 0 to 15"),
    ("lite", {"head": {"block": 10, "tune_from": 12}}, "head.tune_from", "head.block"),
    ("lite", {"head": {"tune_last": 1}}, "head.tune_last", "only lesion_net"),
    ("tiny", {"head": {"kind": "linear"}}, "head", "tiny_cnn has no head"),
    ("paper", {"head": {"kind": "local"}}, "head.kind", "EfficientNet-Lite"),
    ("fast", {"image.layout": "joined"}, "image.layout", "supervision 'mil'"),
    ("fast", {"batch_size": 2, "mil": {"pos_fraction": 0.9}}, "mil.pos_fraction", "no negative image"),
    ("fast", {"mil": {"top_k": 1}, "mil.top_k": 2}, "mil.top_k", "given twice"),
])
def test_settings_that_do_not_fit_together_are_refused(preset, overrides, field, says):
    err = refused(preset, overrides)
    assert err.field == field and says in str(err), str(err)


def test_overrides_must_be_a_mapping_of_names():
    assert refused("fast", [("epochs", 3)]).field == "overrides"
    assert refused("fast", {"a.b.c": 1}).field == "overrides"
    assert refused("nope", {}).field == "preset"


def test_a_run_refuses_an_override_it_would_not_honour():
    saved = {"seed": 0, "test_fraction": 0.2, "n_folds": 5}
    cfg = preset_config("fast", {"test_fraction": 0.3})
    with pytest.raises(ConfigError, match=r"^test_fraction: 0.3 would not be used: the dataset's split is saved"):
        check_run_overrides(cfg, {"test_fraction": 0.3}, split=saved)
    with pytest.raises(ConfigError, match="^n_folds: 3 would not be used"):
        check_run_overrides(preset_config("fast", {"n_folds": 3}), {"n_folds": 3}, split=saved)
    check_run_overrides(cfg, {"test_fraction": 0.3}, split=None)  # no split yet: it is made from the config
    check_run_overrides(preset_config("fast", {"n_folds": 5, "seed": 3}), {"n_folds": 5, "seed": 3}, split=saved)
    # what only the per-gland trainer reads, on a joined run; augmentation of a frozen backbone's features
    with pytest.raises(ConfigError, match=r"^mil\.train_k: would not be used: only per-gland runs"):
        check_run_overrides(preset_config("tiny", {"mil": {"train_k": 1}}), {"mil": {"train_k": 1}})
    check_run_overrides(preset_config("tiny", {"mil": {"top_k": 1}}), {"mil": {"top_k": 1}})  # evaluation reads it
    with pytest.raises(ConfigError, match=r"^augment\.zoom: would not be used: with freeze 'backbone'"):
        check_run_overrides(preset_config("fast", {"augment.zoom": 0.2}), {"augment.zoom": 0.2})
    check_run_overrides(preset_config("fast", {"freeze": "none", "augment.zoom": 0.2}),
                        {"freeze": "none", "augment.zoom": 0.2})


def test_the_backbone_lists_match_the_networks():
    from inference.ml import networks

    assert set(BACKBONES) == set(networks.BACKBONES) and set(LITE_BLOCKS) == set(networks.LITE)
    efficientnet = pytest.importorskip("efficientnet_lite_pytorch")
    for name, n in LITE_BLOCKS.items():
        assert len(efficientnet.EfficientNet.from_name(name.replace("_", "-"))._blocks) == n


def test_the_choices_match_the_code_that_reads_them():
    from inference.ml import ensemble, operating_value

    assert SETTINGS["aggregator"].values == operating_value.AGGREGATORS
    assert SETTINGS["runtime"].values == ensemble.RUNTIMES
    from inference.ml.mil import DEFAULT_MIL
    from inference.ml.presets import DEFAULT_POS_FRACTION

    assert set(DEFAULT_MIL) == set(SETTINGS["mil"].fields) and DEFAULT_MIL["pos_fraction"] == DEFAULT_POS_FRACTION
