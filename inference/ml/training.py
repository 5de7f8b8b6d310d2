"""Training one fold, and the fold ensemble used for aggregation and inference.

``train_fold`` starts from given initial weights (the run's ``init.pt``, identical for every fold), uses
class-weighted BCE, Adam with cosine decay to a floor ``alpha * lr``, keeps the best-validation-loss
checkpoint (``best.pt``) and loads it at the end, saves ``last.pt`` after every epoch so a killed worker
resumes from its last finished epoch, and is deterministic on CPU for a seed (each epoch reseeds from
``(seed, epoch)``, so a resumed fold continues exactly as an uninterrupted one would).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_path, write_text
from .augment import augment_batch
from .ensemble import Ensemble, load_ensemble  # noqa: F401 - the fold ensemble lives there
from .networks import model_for, to_input  # noqa: F401 - re-exported for callers


@dataclass
class FoldData:
    train_x: np.ndarray  # [N, 3, H, W] in [0, 1]
    train_y: np.ndarray  # [N] 0/1
    val_x: np.ndarray
    val_y: np.ndarray


def fresh_model(config: dict, seed: int | None = None) -> tuple[torch.nn.Module, str]:
    """A newly initialised model of the configured backbone (seeded), with the configured pretrained weights
    (``config["pretrained"]``: 'auto', 'none' or a file); returns ``(model, weights used or '')``."""
    torch.manual_seed(config.get("seed", 0) if seed is None else seed)
    return model_for(config, config.get("pretrained", "none"))


def lr_at(step: int, total: int, lr: float, alpha: float) -> float:
    """Cosine decay from ``lr`` to ``alpha * lr`` over ``total`` steps."""
    t = min(step, total) / max(total, 1)
    return lr * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * t)) + alpha)


def class_weights(y: np.ndarray) -> tuple[float, float]:
    """Inverse-frequency weights (w0, w1) with mean weight 1 over the training images."""
    n, n1 = len(y), float(np.sum(y))
    n0 = n - n1
    return (n / (2 * n0) if n0 else 1.0), (n / (2 * n1) if n1 else 1.0)


def _weighted_bce(logits: torch.Tensor, y: torch.Tensor, w: tuple[float, float]) -> torch.Tensor:
    weights = torch.where(y > 0.5, w[1], w[0])
    return F.binary_cross_entropy_with_logits(logits, y, weight=weights)


def _atomic_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, w: tuple[float, float], batch: int,
             device: str) -> tuple[float, float, np.ndarray]:
    """(weighted loss, accuracy at 0.5, probabilities) on a set."""
    model.eval()
    logits = torch.cat([model(x[i:i + batch].to(device)).reshape(-1).float().cpu() for i in range(0, len(x), batch)])
    loss = float(_weighted_bce(logits, y, w)) if len(y) else float("nan")
    prob = torch.sigmoid(logits).numpy()
    acc = float(np.mean((prob >= 0.5) == (y.numpy() > 0.5))) if len(y) else float("nan")
    return loss, acc, prob


def train_fold(config: dict, init_path: str | os.PathLike, data: FoldData, out_dir: str | os.PathLike, *,
               fold: int = 0, device: str | None = None,
               on_epoch: Callable[[dict, list[dict]], None] | None = None,
               on_batch: Callable[[int, int], None] | None = None) -> dict:
    """Train one fold; returns ``{"best_epoch", "val_loss", "history", "resumed_from"}``.

    ``on_epoch(entry, history)`` is called after every epoch (after ``last.pt`` is saved);
    ``on_batch(done, total)`` between batches (it may raise to stop, e.g. on cancel).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    seed = int(config.get("seed", 0)) * 1000 + fold
    epochs, batch = int(config["epochs"]), int(config["batch_size"])
    side = config.get("input_side_px")
    if len(data.train_y) == 0 or len(data.val_y) == 0:
        raise ValueError(f"fold {fold}: {len(data.train_y)} training and {len(data.val_y)} validation images")
    torch.use_deterministic_algorithms(device == "cpu", warn_only=True)
    model, _ = model_for(config)
    model.load_state_dict(torch.load(init_path, map_location="cpu", weights_only=True))
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(config["lr"]))
    x_tr, y_tr = to_input(data.train_x, side), torch.as_tensor(data.train_y, dtype=torch.float32)
    x_va, y_va = to_input(data.val_x, side), torch.as_tensor(data.val_y, dtype=torch.float32)
    w = class_weights(data.train_y)
    steps_per_epoch = math.ceil(len(x_tr) / batch)
    history: list[dict] = []
    best = {"epoch": None, "val_loss": float("inf")}
    start = 0
    resumed_from = None
    last = out / "last.pt"
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history, best, start = state["history"], state["best"], state["epoch"]
        resumed_from = start
    for epoch in range(start, epochs):
        gen = torch.Generator().manual_seed(seed * 100 + epoch)
        torch.manual_seed(seed * 100 + epoch)
        order = torch.randperm(len(x_tr), generator=gen)
        model.train()
        total, seen = 0.0, 0
        for b in range(steps_per_epoch):
            if on_batch:
                on_batch(epoch * steps_per_epoch + b, epochs * steps_per_epoch)
            idx = order[b * batch:(b + 1) * batch]
            if len(idx) < 2 and b > 0:  # batch norm needs more than one sample
                continue
            xb = augment_batch(x_tr[idx], config.get("augment", {}), gen).to(device)
            yb = y_tr[idx].to(device)
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch * steps_per_epoch + b, epochs * steps_per_epoch, float(config["lr"]),
                                float(config.get("alpha", 0.0)))
            opt.zero_grad(set_to_none=True)
            loss = _weighted_bce(model(xb).reshape(-1).float(), yb, w)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        val_loss, val_acc, _ = evaluate(model, x_va, y_va, w, batch * 2, device)
        entry = {"epoch": epoch + 1, "train_loss": round(total / max(seen, 1), 6), "val_loss": round(val_loss, 6),
                 "val_acc": round(val_acc, 4), "lr": opt.param_groups[0]["lr"]}
        history.append(entry)
        if val_loss < best["val_loss"]:
            best = {"epoch": epoch + 1, "val_loss": val_loss}
            _atomic_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / "best.pt")
        _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "history": history, "best": best,
                      "epoch": epoch + 1}, last)
        write_text(out / "history.json", json.dumps(history, indent=1))
        if on_epoch:
            on_epoch(entry, history)
    model.load_state_dict(torch.load(out / "best.pt", map_location="cpu", weights_only=True))
    return {"best_epoch": best["epoch"], "val_loss": best["val_loss"], "history": history,
            "resumed_from": resumed_from, "model": model}
