"""Training one fold on per-gland bags by multiple-instance learning (MIL), and scoring glands and scans.

Units come from :func:`inference.ml.supervision.training_units`. Each step takes ``batch_size`` units:

- a *bag* unit (a side with a known label, or both sides of an abnormal scan whose side is unknown): every
  image of the bag (of a negative bag: ``neg_pool`` random ones when set, to save time) is scored without
  gradients (eval mode), the ``top_k`` highest are trained on; a positive
  bag's loss is BCE of the mean of its top-k logits against 1 (top-k pooling: some image shows the lesion), a
  negative bag's is BCE of each of its top-k images and ``random_neg`` random ones against 0 (hard negatives);
  this is top-k MIL as in Campanella et al., Nat Med 2019, with the selection refreshed every step;
- an *images* unit (a side whose images have their own labels from lesion z-ranges): up to ``image_sample``
  labelled images, each with its BCE.

Units are weighted so positive and negative units count equally. Adam with cosine decay to ``alpha * lr``; the
fold keeps the best-validation-loss epoch (``best.pt``) or the last (``select: last``), saves ``last.pt`` after
every epoch and resumes from it exactly (each epoch reseeds from ``(seed, fold, epoch)``), like
:func:`inference.ml.training.train_fold`.

Scores: a side's score is the mean of its ``top_k`` highest image probabilities (:func:`side_score`); a scan's
is the max of its sides (:func:`scan_score`).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .augment import augment_batch
from .metrics import auc
from .supervision import ScanSample, Unit, training_units
from .training import _atomic_save, lr_at, model_for, to_input

DEFAULT_MIL = {"top_k": 2, "random_neg": 2, "image_sample": 4, "select": "best", "neg_pool": 0}


def mil_config(config: dict) -> dict:
    return DEFAULT_MIL | dict(config.get("mil") or {})


def side_score(probs: Sequence[float] | np.ndarray, top_k: int = DEFAULT_MIL["top_k"]) -> float:
    """A gland's score: the mean of its ``top_k`` highest image probabilities."""
    p = np.sort(np.asarray(probs, float).ravel())[::-1]
    if p.size == 0:
        raise ValueError("a side without images has no score")
    return float(p[:max(1, int(top_k))].mean())


def scan_score(sides: dict[str, float]) -> float:
    """A scan's score: the max of its sides' scores."""
    if not sides:
        raise ValueError("a scan without sides has no score")
    return float(max(sides.values()))


class _Pool:
    """Every training image once, as one float16 tensor at the model's input size; bags by offset."""

    def __init__(self, scans: Sequence[ScanSample], side_px: int | None):
        self.offset: dict[int, int] = {}
        chunks, n = [], 0
        for sc in scans:
            for b in sc.bags.values():
                self.offset[id(b)] = n
                chunks.append(to_input(np.asarray(b.images, np.float32), side_px).half())
                n += len(b.images)
        self.x = torch.cat(chunks) if chunks else torch.zeros((0, 3, 1, 1), dtype=torch.float16)

    def rows(self, unit: Unit) -> np.ndarray:
        return np.concatenate([self.offset[id(b)] + idx for b, idx in unit.parts])


@torch.no_grad()
def _logits(model: torch.nn.Module, x: torch.Tensor, device: str, batch: int = 64) -> torch.Tensor:
    model.eval()
    if len(x) == 0:
        return torch.zeros(0)
    return torch.cat([model(x[i:i + batch].to(device).float()).reshape(-1).float().cpu()
                      for i in range(0, len(x), batch)])


def _unit_weights(units: Sequence[Unit]) -> tuple[float, float]:
    n = len(units)
    n1 = sum(u.label for u in units)
    n0 = n - n1
    return (n / (2 * n0) if n0 else 1.0), (n / (2 * n1) if n1 else 1.0)


def _unit_loss(logits: torch.Tensor, unit: Unit, kind_targets: torch.Tensor | None, top_k: int) -> torch.Tensor:
    """Loss of one unit from the logits of its selected images (in selection order)."""
    if unit.kind == "bag" and unit.label == 1:
        k = min(top_k, len(logits))
        pooled = logits[:k].mean()
        return F.binary_cross_entropy_with_logits(pooled, torch.ones((), device=logits.device))
    targets = kind_targets if kind_targets is not None else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.device))


def _select(unit: Unit, scores: torch.Tensor | None, rows: np.ndarray, cfg: dict, gen: torch.Generator
            ) -> tuple[np.ndarray, torch.Tensor | None]:
    """The pool rows a unit trains on this step, and per-image targets (None: pooled or all zero)."""
    if unit.kind == "images":
        labels = torch.as_tensor(unit.image_labels)
        pos, neg = np.flatnonzero(unit.image_labels == 1), np.flatnonzero(unit.image_labels == 0)
        m = int(cfg["image_sample"])
        pick = []
        for group in (pos, neg):
            if len(group):
                order = torch.randperm(len(group), generator=gen)[:m].numpy()
                pick.append(group[order])
        pick = np.concatenate(pick) if pick else np.zeros(0, int)
        return rows[pick], labels[pick].float()
    k = int(cfg["top_k"])
    order = torch.argsort(scores, descending=True).numpy()
    chosen = list(order[:k])
    if unit.label == 0 and cfg["random_neg"]:
        rest = order[k:]
        if len(rest):
            extra = torch.randperm(len(rest), generator=gen)[:int(cfg["random_neg"])].numpy()
            chosen += list(rest[extra])
    return rows[np.asarray(chosen, int)], None


@torch.no_grad()
def score_scans(model_or_predict, scans: Sequence[ScanSample], side_px: int | None, top_k: int,
                device: str = "cpu") -> list[dict]:
    """Per scan ``{"scan", "patient", "label", "sides": {side: score}, "score", "probs": {side: [n]}}``.

    ``model_or_predict``: a torch model, or a callable ``images -> probabilities [n]`` (e.g. an ensemble's mean)."""
    out = []
    for sc in scans:
        sides, probs = {}, {}
        for s, b in sc.bags.items():
            if len(b.images) == 0:
                continue
            if isinstance(model_or_predict, torch.nn.Module):
                p = torch.sigmoid(_logits(model_or_predict, to_input(np.asarray(b.images, np.float32), side_px),
                                          device)).numpy()
            else:
                p = np.asarray(model_or_predict(np.asarray(b.images, np.float32)), float).reshape(len(b.images), -1)
                p = p.mean(axis=1)
            probs[s] = p
            sides[s] = side_score(p, top_k)
        out.append({"scan": sc.scan, "patient": sc.patient, "label": sc.label, "sides": sides,
                    "side_labels": {s: b.label for s, b in sc.bags.items()},
                    "score": scan_score(sides) if sides else float("nan"), "probs": probs})
    return out


def _validate(model, pool: _Pool, scans: Sequence[ScanSample], units: Sequence[Unit], w: tuple[float, float],
              cfg: dict, device: str) -> tuple[float, float | None]:
    """(weighted validation loss, scan AUC): each unit scored on all its images (bag units by their top-k),
    scans by the max of their sides' top-k mean probability; one forward pass over the validation images."""
    logits = _logits(model, pool.x, device)
    k = int(cfg["top_k"])
    total, weight = 0.0, 0.0
    for u in units:
        lg = logits[pool.rows(u)]
        if u.kind == "bag":
            lg = torch.sort(lg, descending=True).values[:k]
            target = torch.full_like(lg, float(u.label))
            loss = F.binary_cross_entropy_with_logits(lg.mean() if u.label == 1 else lg,
                                                      target[0] if u.label == 1 else target)
        else:
            loss = F.binary_cross_entropy_with_logits(lg, torch.as_tensor(u.image_labels, dtype=torch.float32))
        total += float(loss) * w[u.label]
        weight += w[u.label]
    probs = torch.sigmoid(logits).numpy()
    y, score = [], []
    for sc in scans:
        sides = {s: side_score(probs[pool.offset[id(b)]:pool.offset[id(b)] + len(b.images)], k)
                 for s, b in sc.bags.items() if len(b.images)}
        if sides:
            y.append(sc.label)
            score.append(scan_score(sides))
    return total / max(weight, 1e-9), (auc(y, score) if len(set(y)) == 2 else None)


def train_fold_mil(config: dict, init_path: str | os.PathLike, train: Sequence[ScanSample],
                   val: Sequence[ScanSample], out_dir: str | os.PathLike, *, fold: int = 0, device: str | None = None,
                   on_epoch: Callable[[dict, list[dict]], None] | None = None,
                   on_batch: Callable[[int, int], None] | None = None) -> dict:
    """Train one fold; returns ``{"best_epoch", "val_loss", "history", "resumed_from", "model"}``.

    ``train``/``val``: :class:`ScanSample` lists (patients disjoint). ``config``: a preset configuration
    (``epochs``, ``batch_size`` units per step, ``lr``, ``alpha``, ``augment``, ``mil``: top_k, random_neg,
    image_sample, select 'best'|'last'). Raises ValueError when the training or validation scans give no unit.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = mil_config(config)
    seed = int(config.get("seed", 0)) * 1000 + fold
    epochs, batch = int(config["epochs"]), int(config["batch_size"])
    side = config.get("input_side_px")
    units, val_units = training_units(train), training_units(val)
    if not units or not val_units:
        raise ValueError(f"fold {fold}: {len(units)} training and {len(val_units)} validation units")
    torch.use_deterministic_algorithms(device == "cpu", warn_only=True)
    model, _ = model_for(config)
    model.load_state_dict(torch.load(init_path, map_location="cpu", weights_only=True))
    model.to(device)
    if device.startswith("cuda"):
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=float(config["lr"]), weight_decay=float(config.get("weight_decay",
                                                                                                  0.0)))
    pool, val_pool = _Pool(train, side), _Pool(val, side)
    if device.startswith("cuda"):
        pool.x, val_pool.x = pool.x.pin_memory(), val_pool.x.pin_memory()
    w = _unit_weights(units)
    steps = math.ceil(len(units) / batch)
    use_amp = device.startswith("cuda") and bool(config.get("amp", True))
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    history: list[dict] = []
    best = {"epoch": None, "val_loss": float("inf")}
    start, resumed_from = 0, None
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
        order = torch.randperm(len(units), generator=gen).tolist()
        total, seen = 0.0, 0
        for b in range(steps):
            if on_batch:
                on_batch(epoch * steps + b, epochs * steps)
            chosen = [units[i] for i in order[b * batch:(b + 1) * batch]]
            rows_all = [pool.rows(u) for u in chosen]
            if int(cfg["neg_pool"]):  # negative bags: hard negatives among a random subset
                m = int(cfg["neg_pool"])
                rows_all = [r[torch.randperm(len(r), generator=gen)[:m].numpy()] if u.kind == "bag" and u.label == 0
                            and len(r) > m else r for u, r in zip(chosen, rows_all)]
            bag_rows = [r for u, r in zip(chosen, rows_all) if u.kind == "bag"]
            scores = _logits(model, pool.x[torch.as_tensor(np.concatenate(bag_rows))], device) if bag_rows else None
            picks, targets, cursor = [], [], 0
            for u, rows in zip(chosen, rows_all):
                s = None
                if u.kind == "bag":
                    s = scores[cursor:cursor + len(rows)]
                    cursor += len(rows)
                r, t = _select(u, s, rows, cfg, gen)
                picks.append(r)
                targets.append(t)
            sizes = [len(r) for r in picks]
            if sum(sizes) < 2:
                continue
            xb = augment_batch(pool.x[torch.as_tensor(np.concatenate(picks))].float(), config.get("augment", {}),
                               gen).to(device, non_blocking=True)
            if device.startswith("cuda"):
                xb = xb.contiguous(memory_format=torch.channels_last)
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch * steps + b, epochs * steps, float(config["lr"]), float(config.get("alpha", 0.0)))
            model.train()
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", enabled=use_amp):
                logits = model(xb).reshape(-1).float()
            losses, weights, pos = [], [], 0
            for u, n, t in zip(chosen, sizes, targets):
                if n:
                    losses.append(_unit_loss(logits[pos:pos + n], u, t, int(cfg["top_k"])) * w[u.label])
                    weights.append(w[u.label])
                pos += n
            loss = torch.stack(losses).sum() / sum(weights)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            total += float(loss.detach()) * len(chosen)
            seen += len(chosen)
        val_loss, val_auc = _validate(model, val_pool, val, val_units, w, cfg, device)
        entry = {"epoch": epoch + 1, "train_loss": round(total / max(seen, 1), 6), "val_loss": round(val_loss, 6),
                 "val_auc": None if val_auc is None else round(val_auc, 4), "lr": opt.param_groups[0]["lr"]}
        history.append(entry)
        if cfg["select"] == "last" or val_loss < best["val_loss"]:
            best = {"epoch": epoch + 1, "val_loss": val_loss}
            _atomic_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / "best.pt")
        _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "history": history, "best": best,
                      "epoch": epoch + 1}, last)
        (out / "history.json").write_text(json.dumps(history, indent=1))
        if on_epoch:
            on_epoch(entry, history)
    model.load_state_dict(torch.load(out / "best.pt", map_location="cpu", weights_only=True))
    return {"best_epoch": best["epoch"], "val_loss": best["val_loss"], "history": history,
            "resumed_from": resumed_from, "model": model}
