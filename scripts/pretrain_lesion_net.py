#!/usr/bin/env python
"""Pretrain the lesion detector shipped in ``inference/ml/weights/`` (``lesion_net-v1.pt`` and its card).

Generated patients (``synthetic.make_patient``: synthetic anatomy), seeds ``PRETRAIN_SEED * 1000 + i``, and with
``--dicom-patients N`` copies of a second real patient, the example DICOM series with lesions inserted on its right
adrenal (``synthetic.real_base.make_dicom_patient``: portal venous or made unenhanced, 1-3 mm pixels, 2-4 mm
slices), seeds ``DICOM_SEED * 1000 + i``. The example CT (``example_ct``: the benchmarks' real anatomy) is left
out so that it stays unseen anatomy for every benchmark; no test, demo or benchmark cohort draws from these seed
ranges (``benchmarks/bench_model_quality.py`` refuses them). Boxes from the app's proposer,
per-gland images as a run builds them (the ``fast`` preset's ``image``), exact lesion pixels as targets
(``inference.ml.pretraining.train_dense``). Then a check on a second cohort (``CHECK_SEED``, 30% of it on the
real CT) prints the per-side and scan AUC of the detector alone (max over cells, side = mean of its top-2 images,
scan = max of sides), and the card records seeds, counts, history and that check.

Usage: ``python scripts/pretrain_lesion_net.py [--patients 240] [--epochs 8] [--out inference/ml/weights]``.
About 10 min to generate and 10-15 min to train on 2 cores. Deterministic for its seeds (CPU).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from inference.ml.metrics import auc  # noqa: E402
from inference.ml.mil import scan_score, side_score  # noqa: E402
from inference.ml.networks import LesionNet  # noqa: E402
from inference.ml.presets import preset_config  # noqa: E402
from inference.ml.pretraining import train_dense  # noqa: E402
from synthetic.dense import dense_cohort  # noqa: E402

PRETRAIN_SEED = 555   # patient seeds 555000-555999
CHECK_SEED = 777      # patient seeds 777000-777999
DICOM_SEED = 556      # patient seeds 556000-556999 (the example DICOM series' patient)
WEIGHTS = "lesion_net-v1"


def _arrays(patients) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.concatenate([s.images for p in patients for s in p.sides.values()])
    m = np.concatenate([s.mask for p in patients for s in p.sides.values()])
    return torch.from_numpy(x), torch.from_numpy(m)


@torch.no_grad()
def check(model: LesionNet, patients, top_k: int = 2) -> dict:
    """Per-side and scan AUC of the detector alone on ``patients``; scan AUC apart for the real base."""
    model.eval()
    side_y, side_s, scan_y, scan_s, real = [], [], [], [], []
    for p in patients:
        sides = {}
        for s, d in p.sides.items():
            prob = torch.sigmoid(model(torch.from_numpy(d.images).float())).numpy()
            sides[s] = side_score(prob, top_k)
            side_y.append(d.abnormal)
            side_s.append(sides[s])
        scan_y.append(p.label)
        scan_s.append(scan_score(sides))
        real.append(p.real)
    out = {"patients": len(patients), "side_auc": auc(side_y, side_s), "scan_auc": auc(scan_y, scan_s)}
    for flag, name in ((False, "synthetic"), (True, "real")):
        y = [a for a, r in zip(scan_y, real) if r == flag]
        s = [a for a, r in zip(scan_s, real) if r == flag]
        if len(set(y)) == 2:
            out[f"scan_auc_{name}"] = auc(y, s)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def _cohort(args, seed: int, n: int, image_cfg: dict, abnormal: float, real: float, fixtures: Path | None,
            real_base: str = "real") -> list:
    key = f"dense-s{seed}-n{n}-a{abnormal}-r{real}-{json.dumps(image_cfg, sort_keys=True)}"
    if real_base != "real":
        key += f"-{real_base}"
    cache = Path(args.cache) / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt" if args.cache else None
    if cache and cache.is_file():
        return torch.load(cache, weights_only=False)
    patients = dense_cohort(seed, n, image_cfg, abnormal_fraction=abnormal, real_fraction=real,
                            processes=args.processes, fixtures_dir=fixtures, real_base=real_base)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(patients, cache)
    return patients


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=240)
    ap.add_argument("--check-patients", type=int, default=60)
    ap.add_argument("--dicom-patients", type=int, default=0,
                    help="copies of the example DICOM series' patient with inserted lesions (a second real anatomy)")
    ap.add_argument("--weights", default=WEIGHTS, help="file name of the weights and card, without .pt")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "inference" / "ml" / "weights"))
    ap.add_argument("--cache", default="", help="folder keeping the generated cohorts between runs")
    args = ap.parse_args()
    torch.set_num_threads(2)
    image_cfg = preset_config("fast")["image"]
    fixtures = REPO / "var" / "fixtures" / "totalsegmentator"
    t = time.perf_counter()
    train = _cohort(args, PRETRAIN_SEED, args.patients, image_cfg, 0.7, 0.0, None)
    if args.dicom_patients:
        train = train + _cohort(args, DICOM_SEED, args.dicom_patients, image_cfg, 0.6, 1.0, fixtures, "dicom")
    held = _cohort(args, CHECK_SEED, args.check_patients, image_cfg, 0.5, 0.3, fixtures)
    print(f"{len(train)} + {len(held)} patients ready in {time.perf_counter() - t:.0f} s", flush=True)
    x, m = _arrays(train)
    torch.manual_seed(0)
    model = LesionNet()

    def report(epoch: int, loss: float, seconds: float) -> None:
        print(f"epoch {epoch}: loss {loss:.4f} ({seconds:.0f} s); check {check(model, held)}", flush=True)

    history = train_dense(model, x, m, epochs=args.epochs, seed=0, on_epoch=report)
    result = check(model, held)
    print(f"check cohort (seed {CHECK_SEED}): {result}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    name = args.weights
    torch.save(state, out / f"{name}.pt")
    digest = hashlib.sha256((out / f"{name}.pt").read_bytes()).hexdigest()
    n_dicom = sum(1 for p in train if getattr(p, "base", "synthetic") == "dicom")
    card = {"weights": f"{name}.pt", "sha256": digest, "network": "LesionNet(width=24)",
            "image": image_cfg, "pretrain_seed": PRETRAIN_SEED, "patients": len(train),
            "dicom_seed": DICOM_SEED if n_dicom else None, "dicom_patients": n_dicom,
            "images": int(len(x)), "lesion_images": int(m.flatten(1).any(1).sum()),
            "anatomy": ("synthetic, and the example DICOM series' patient with inserted lesions (the example CT, "
                        "the benchmarks' real anatomy, is left out)") if n_dicom else
                       "synthetic only (the real TotalSegmentator CT is left out)",
            "epochs": args.epochs, "augment": "shift +-10 px; in-plane Gaussian blur sigma 0.5-2.5 px on half of "
            "each batch; contrast +-5%; brightness +-0.02; noise sd 0.015", "history": history, "check_seed": CHECK_SEED, "check": result,
            "made_by": "scripts/pretrain_lesion_net.py", "torch": torch.__version__}
    (out / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {out / name}.pt (sha256 {digest[:16]})")


if __name__ == "__main__":
    main()
