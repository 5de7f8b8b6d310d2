"""Training one fold on per-gland bags by multiple-instance learning (MIL), and scoring glands and scans.

Units come from :func:`inference.ml.supervision.training_units`: a *bag* (a side with a known label, or both
sides of an abnormal scan whose side is unknown) or an *images* unit (a side whose images have their own labels
from lesion z-ranges). Top-k instance MIL (Campanella et al., Nat Med 2019): at the start of every epoch each
training image is scored (eval mode, no gradients); then

- positives: the ``train_k`` highest-scoring images of every positive bag (during the first ``warmup_epochs``
  every image of it: with a few dozen bags, selecting from an untrained head's scores locks onto chance
  images), and the labelled-abnormal images of *images* units; a batch draws its positives bag by bag, so a
  large lesion does not outweigh a small one;
- negatives: every image of a negative bag (they are all normal: a normal side, or either side of a normal
  scan) and the labelled-normal images; half of each batch's negatives are drawn among the highest-scoring
  ones (hard negatives), half uniformly; with ``neg_scored`` > 0 only that many random negative images are
  scored per epoch (the hard ones are the highest of those), which saves most of the scoring pass;

and ``steps_per_epoch`` batches of ``batch_size`` images, a ``pos_fraction`` of them positive, are trained with
BCE. With ``freeze: backbone`` the pretrained body stays as it is: every image's features are computed once (no
augmentation) and only the head learns (and the body's tuned blocks, when the network has them; their batch
norms keep their pretrained statistics): seconds per epoch on a CPU, few parameters to fit with a few dozen
patients. Adam with cosine decay to ``alpha * lr``; the fold keeps the best-validation-loss epoch (``best.pt``, or
the last with ``select: last``), saves ``last.pt`` after every epoch and resumes from it exactly (each epoch
reseeds from ``(seed, fold, epoch)``), like :func:`inference.ml.training.train_fold`. Validation loss: each
validation unit pooled by its top-k (a bag) or per image; validation AUC: scans by the rule below.

Scores: a side's score is the mean of its ``top_k`` highest image probabilities (:func:`side_score`); a scan's
is the max of its sides (:func:`scan_score`).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import reference
from .atomic import write_text
from .augment import augment_batch
from .metrics import auc
from .supervision import ScanSample, Unit, training_units
from .training import _atomic_save, lr_at, model_for, to_input

DEFAULT_MIL = {"top_k": 2, "train_k": 2, "warmup_epochs": 2, "pos_fraction": 0.25, "hard_fraction": 0.5,
               "hard_pool": 0.2, "neg_scored": 0, "steps_per_epoch": 30, "select": "best"}


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
    with torch.autocast("cuda", enabled=device.startswith("cuda")):
        return torch.cat([model(x[i:i + batch].to(device).float()).reshape(-1).float().cpu()
                          for i in range(0, len(x), batch)])


def _unit_weights(units: Sequence[Unit]) -> tuple[float, float]:
    n = len(units)
    n1 = sum(u.label for u in units)
    n0 = n - n1
    return (n / (2 * n0) if n0 else 1.0), (n / (2 * n1) if n1 else 1.0)


def _epoch_sets(units: Sequence[Unit], pool: _Pool, scores: torch.Tensor, train_k: int | None
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """(positive rows per positive unit, negative rows) of the pool for this epoch; ``train_k`` None: every
    image of a positive bag."""
    pos, neg = [], []
    for u in units:
        rows = pool.rows(u)
        if u.kind == "images":
            if (u.image_labels == 1).any():
                pos.append(rows[u.image_labels == 1])
            neg.append(rows[u.image_labels == 0])
        elif u.label == 1:
            if train_k is None:
                pos.append(rows)
            else:
                order = torch.argsort(scores[torch.as_tensor(rows)], descending=True).numpy()
                pos.append(rows[order[:train_k]])
        else:
            neg.append(rows)
    neg_rows = np.concatenate(neg).astype(np.int64) if neg else np.zeros(0, np.int64)
    return [p.astype(np.int64) for p in pos if len(p)], neg_rows


def _epoch_scores(model, pool: _Pool, units: Sequence[Unit], device: str, neg_scored: int, warm: bool,
                  gen: torch.Generator) -> torch.Tensor:
    """Logits of the pool's images for this epoch's selection (-inf where not scored): every image of a
    positive bag (none during warm-up, when all are used), and every negative image or ``neg_scored`` random
    ones."""
    if not neg_scored:
        return _logits(model, pool.x, device)
    want = []
    negatives = []
    for u in units:
        rows = pool.rows(u)
        if u.kind == "bag" and u.label == 1:
            if not warm:
                want.append(rows)
        elif u.kind == "bag":
            negatives.append(rows)
        else:
            negatives.append(rows[u.image_labels == 0])
    neg = np.concatenate(negatives) if negatives else np.zeros(0, np.int64)
    if len(neg) > neg_scored:
        neg = neg[torch.randperm(len(neg), generator=gen)[:neg_scored].numpy()]
    rows = np.concatenate(want + [neg]).astype(np.int64)
    scores = torch.full((len(pool.x),), float("-inf"))
    if len(rows):
        scores[torch.as_tensor(rows)] = _logits(model, pool.x[torch.as_tensor(rows, device=pool.x.device)], device)
    return scores


def _draw_positives(pos: list[np.ndarray], n: int, gen: torch.Generator) -> np.ndarray:
    """``n`` rows: a positive unit uniformly, then one of its images uniformly."""
    units = torch.randint(len(pos), (n,), generator=gen).numpy()
    return np.array([pos[u][int(torch.randint(len(pos[u]), (1,), generator=gen))] for u in units], np.int64)


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


class _Classifier(torch.nn.Module):
    """A network's classifier alone, on pooled features ``[B, C]`` (a frozen backbone's)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def train(self, mode: bool = True) -> _Classifier:
        """Training mode for dropout, but every batch norm stays in eval mode: a tuned block keeps the
        statistics it was pretrained with (MIL batches, a quarter positives and many hard negatives, are not
        the images it will see)."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "from_frozen"):
            return self.model.from_frozen(p)
        return self.model.classify(p)


@torch.no_grad()
def _pooled_features(model: torch.nn.Module, x: torch.Tensor, device: str, batch: int = 64) -> torch.Tensor:
    model.eval()
    if len(x) == 0:
        return torch.zeros((0, getattr(model.fc, "in_features", 1)))
    if hasattr(model, "frozen"):  # a local head: the map before its tuned blocks
        return torch.cat([model.frozen(x[i:i + batch].to(device).float()).float()
                          for i in range(0, len(x), batch)]).to(x.device)
    return torch.cat([model.pooled(model.features(x[i:i + batch].to(device).float())).float()
                      for i in range(0, len(x), batch)]).to(x.device)


def _with_reference(model: torch.nn.Module, pool: _Pool, val_pool: _Pool, train: Sequence[ScanSample],
                    seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen maps of ``pool`` and ``val_pool`` with the normal reference's channel added, after setting the
    model's reference from the training scans' normal glands (``inference.ml.reference``): a training image is
    measured with its own patient's cells left out, as an unseen scan is."""
    names, normal = [], []
    for sc in train:
        for b in sc.bags.values():
            names += [sc.patient] * len(b.images)
            normal += [b.label == 0] * len(b.images)
    groups, _ = reference.patient_ids(names)
    normal_rows = torch.as_tensor(np.flatnonzero(normal), dtype=torch.long)
    device = pool.x.device  # the bank is chosen on the CPU (its greedy passes); the pools stay where they were
    maps, val_maps = pool.x.float().cpu(), val_pool.x.float().cpu()
    bank, bank_groups = reference.build(maps[normal_rows], groups[normal_rows], model.reference_cells, seed)
    train_d = reference.distances(maps, bank, groups, bank_groups)
    scale = reference.normal_scale(train_d[normal_rows])
    model.set_reference(bank, scale)
    return (torch.cat([maps, train_d / scale], 1).to(device),
            torch.cat([val_maps, reference.distances(val_maps, bank) / scale], 1).to(device))


def train_fold_mil(config: dict, init_path: str | os.PathLike, train: Sequence[ScanSample],
                   val: Sequence[ScanSample], out_dir: str | os.PathLike, *, fold: int = 0, device: str | None = None,
                   on_epoch: Callable[[dict, list[dict]], None] | None = None,
                   on_batch: Callable[[int, int], None] | None = None) -> dict:
    """Train one fold; returns ``{"best_epoch", "val_loss", "history", "resumed_from", "model"}``.

    ``train``/``val``: :class:`ScanSample` lists (patients disjoint). ``config``: a preset configuration
    (``epochs``, ``batch_size`` images per step, ``lr``, ``alpha``, ``weight_decay``, ``augment``, ``freeze``
    ('backbone' or none), ``mil``: top_k,
    train_k, pos_fraction, hard_fraction, hard_pool, steps_per_epoch, select 'best'|'last'). Raises ValueError
    when the training or validation scans give no unit, or no positive or no negative image.
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
    if device.startswith("cuda"):  # float16 images live on the GPU: batches are gathered and augmented there
        pool.x = pool.x.pin_memory().to(device, non_blocking=True)
        val_pool.x = val_pool.x.pin_memory().to(device, non_blocking=True)
    net, augment = model, config.get("augment", {})
    if config.get("freeze") == "backbone":
        # ImageNet features computed once (eval mode, no augmentation); only the linear unit learns
        trainable = (model.trainable_parameters() if hasattr(model, "trainable_parameters")
                     else list(model.fc.parameters()))
        for prm in model.parameters():
            prm.requires_grad_(False)
        for prm in trainable:
            prm.requires_grad_(True)
        pool.x, val_pool.x = _pooled_features(model, pool.x, device), _pooled_features(model, val_pool.x, device)
        if getattr(model, "reference_cells", 0):
            pool.x, val_pool.x = _with_reference(model, pool, val_pool, train, seed)
        net, augment = _Classifier(model), {}
        opt = torch.optim.Adam(trainable, lr=float(config["lr"]), weight_decay=float(config.get("weight_decay", 0.0)))
    w = _unit_weights(units)
    steps = int(cfg["steps_per_epoch"])
    n_pos = max(1, int(round(batch * float(cfg["pos_fraction"]))))
    n_neg = batch - n_pos
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
        warm = epoch < int(cfg["warmup_epochs"])
        scores = _epoch_scores(net, pool, units, device, int(cfg["neg_scored"]), warm, gen)
        pos, neg = _epoch_sets(units, pool, scores, None if warm else int(cfg["train_k"]))
        if len(pos) == 0 or len(neg) == 0:
            raise ValueError(f"fold {fold}: {len(pos)} positive and {len(neg)} negative training images")
        scored = neg[torch.isfinite(scores[torch.as_tensor(neg)]).numpy()]
        hard = scored[torch.argsort(scores[torch.as_tensor(scored)], descending=True).numpy()]
        hard = hard[:max(1, int(len(hard) * float(cfg["hard_pool"])))]
        n_hard = int(round(n_neg * float(cfg["hard_fraction"])))
        total, seen = 0.0, 0
        for b in range(steps):
            if on_batch:
                on_batch(epoch * steps + b, epochs * steps)
            rows = np.concatenate([_draw_positives(pos, n_pos, gen),
                                   hard[torch.randint(len(hard), (n_hard,), generator=gen).numpy()],
                                   neg[torch.randint(len(neg), (n_neg - n_hard,), generator=gen).numpy()]])
            y = torch.cat([torch.ones(n_pos), torch.zeros(n_neg)]).to(device)
            xb = pool.x[torch.as_tensor(rows, device=pool.x.device)].float()
            if augment:
                xb = augment_batch(xb, augment, gen)
            if device.startswith("cuda") and xb.ndim == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch * steps + b, epochs * steps, float(config["lr"]), float(config.get("alpha", 0.0)))
            net.train()
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", enabled=use_amp):
                logits = net(xb).reshape(-1).float()
            loss = F.binary_cross_entropy_with_logits(logits, y)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            total += float(loss.detach()) * len(rows)
            seen += len(rows)
        val_loss, val_auc = _validate(net, val_pool, val, val_units, w, cfg, device)
        entry = {"epoch": epoch + 1, "train_loss": round(total / max(seen, 1), 6), "val_loss": round(val_loss, 6),
                 "val_auc": None if val_auc is None else round(val_auc, 4), "lr": opt.param_groups[0]["lr"]}
        history.append(entry)
        if cfg["select"] == "last" or val_loss < best["val_loss"]:
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
