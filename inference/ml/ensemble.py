"""The fold ensemble used for aggregation and verdicts: every fold model over one batch of images.

``predict(images [N, 3, H, W]) -> [N, n_folds]`` probabilities; ``predict_maps`` also gives the mean over folds of
each image's class-activation logit map ``[N, h, w]`` from the same forward pass (no extra cost, see
``inference.ml.networks``). Runtimes (chosen by measurement in ``benchmarks/bench_predict.py``):

- ``torch``: eager PyTorch, ``inference_mode``, channels-last on CUDA (with float16 autocast);
- ``onnx``: ONNX Runtime on CPU when installed (each fold exported once to ``best.onnx`` beside its weights,
  graph optimisations on, no busy-waiting threads, which matters on a shared CPU).
``auto`` takes ``onnx`` on CPU when ONNX Runtime is importable, else ``torch``.
"""
from __future__ import annotations

import importlib.util
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .atomic import write_bytes
from .networks import model_for, to_input

RUNTIMES = ("auto", "torch", "onnx")


class _WithMaps(torch.nn.Module):
    """(logit [B], CAM logit map [B, h, w]) of a network, for export."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.net.features(x)
        return self.net.head(f).reshape(-1), self.net.cam(f)


def onnx_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def _threads() -> int:
    return max(1, torch.get_num_threads())


class _OnnxFold:
    def __init__(self, model: torch.nn.Module, example: torch.Tensor, cache: Path | None):
        import onnxruntime as ort

        data = None
        if cache is not None and cache.is_file():
            data = cache.read_bytes()
        if data is None:
            buf = io.BytesIO()
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices (no onnxscript)
                torch.onnx.export(_WithMaps(model.eval()), example, buf, input_names=["x"],
                                  output_names=["logit", "cam"], dynamic_axes={"x": {0: "n"}, "logit": {0: "n"},
                                                                               "cam": {0: "n"}},
                                  opset_version=17, dynamo=False)
            data = buf.getvalue()
            if cache is not None:
                write_bytes(cache, data)
        so = ort.SessionOptions()
        so.intra_op_num_threads = _threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logit, cam = self.session.run(None, {"x": x})
        return logit, cam


class Ensemble:
    """Fold models together. ``runtime``: 'torch', 'onnx' or 'auto' (see the module docstring);
    ``cache_paths``: per fold, where an exported ONNX graph may be kept (None: not kept)."""

    def __init__(self, models: Sequence[torch.nn.Module], config: dict, device: str | None = None,
                 batch_size: int = 64, runtime: str = "torch", cache_paths: Sequence[Path | None] | None = None):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if runtime == "auto":
            runtime = "onnx" if self.device == "cpu" and onnx_available() else "torch"
        self.runtime = runtime
        self.side = config.get("input_side_px") or config.get("image", {}).get("side_px")
        self.models = [m.to(self.device).eval() for m in models]
        # a normal reference's distances grow with the batch: keep them bounded (networks.REFERENCE_FLOATS)
        self.batch_size = min([batch_size] + [m.images_per_batch(int(self.side or 120)) for m in self.models
                                              if len(getattr(m, "reference", ()))])
        if self.device.startswith("cuda"):
            self.models = [m.to(memory_format=torch.channels_last) for m in self.models]
        self._onnx: list[_OnnxFold] = []
        if runtime == "onnx":
            if self.device != "cpu":
                raise ValueError("the onnx runtime runs on CPU only")
            layout = config.get("image", {}).get("layout", "joined")
            h = int(self.side or 120)
            example = torch.rand(1, 3, h, h if layout == "side" else 2 * h)
            paths = list(cache_paths or [None] * len(self.models))
            self._onnx = [_OnnxFold(m, example, p) for m, p in zip(self.models, paths)]

    def __len__(self) -> int:
        return len(self.models)

    def _run(self, x: torch.Tensor, maps: bool) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(x)
        probs = np.empty((n, len(self.models)), np.float32)
        cams = None
        if self._onnx:
            xn = np.ascontiguousarray(x.numpy(), dtype=np.float32)
            for f, sess in enumerate(self._onnx):
                logit, cam = sess(xn)
                probs[:, f] = 1.0 / (1.0 + np.exp(-logit.reshape(-1)))
                if maps:
                    cams = cam.astype(np.float32) if cams is None else cams + cam
        else:
            xd = x.to(self.device, non_blocking=True)
            if self.device.startswith("cuda"):
                xd = xd.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cuda", enabled=self.device.startswith("cuda")):
                for f, m in enumerate(self.models):
                    feat = m.features(xd)
                    probs[:, f] = torch.sigmoid(m.head(feat).reshape(-1).float()).cpu().numpy()
                    if maps:
                        c = m.cam(feat).float().cpu().numpy()
                        cams = c if cams is None else cams + c
        if cams is not None:
            cams /= len(self.models)
        return probs, cams

    def predict(self, images: np.ndarray) -> np.ndarray:
        """``[N, n_folds]`` probabilities of images ``[N, 3, H, W]`` in [0, 1] (resized to the model input)."""
        return self.predict_maps(images, maps=False)[0]

    def predict_maps(self, images: np.ndarray, maps: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``(probabilities [N, n_folds], mean CAM logit maps [N, h, w] or None)``."""
        out_p, out_m = [], []
        for s in range(0, len(images), self.batch_size):
            x = to_input(np.asarray(images[s:s + self.batch_size], np.float32), self.side)
            p, m = self._run(x, maps)
            out_p.append(p)
            if m is not None:
                out_m.append(m)
        if not out_p:
            return np.zeros((0, len(self.models)), np.float32), None
        return np.concatenate(out_p), (np.concatenate(out_m) if out_m else None)


def load_ensemble(weight_paths: Sequence[str | os.PathLike], config: dict, device: str | None = None,
                  runtime: str | None = None) -> Ensemble:
    """The fold models of a run from their ``best.pt`` files. ``runtime`` (default ``config["runtime"]`` or
    'torch'): see the module docstring; the ONNX graphs are cached as ``best.onnx`` beside the weights."""
    models = []
    for p in weight_paths:
        m, _ = model_for(config)
        m.load_state_dict(torch.load(p, map_location="cpu", weights_only=True))
        models.append(m)
    if not models:
        raise ValueError("no fold weights given")
    runtime = runtime or config.get("runtime", "torch")
    caches = [Path(p).with_suffix(".onnx") for p in weight_paths]
    for c, p in zip(caches, weight_paths):  # a graph exported from older weights is stale
        if c.is_file() and c.stat().st_mtime < Path(p).stat().st_mtime:
            c.unlink(missing_ok=True)
    return Ensemble(models, config, device, runtime=runtime, cache_paths=caches)
