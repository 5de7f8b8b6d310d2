#!/usr/bin/env python
"""Time from submission to stored verdict for a 512x512x100 CT series with a 5-fold EfficientNet-B1 ensemble
(random init) on 2 CPU cores, and the model's share of it.

The series is the real TotalSegmentator CT (example_ct) resampled to 512x512 in-plane, 100 slices at 3 mm,
stored as the import area stores volumes. Submission is the API's path (``submit_prediction`` -> Job ->
the predict job run in this process, as a worker would run it), ending with the Prediction row stored.

Baseline vs ours, same images and weights:
- baseline: each fold model run one after the other, one image at a time (batch 1, ``no_grad``);
- ours: the fold ensemble over all images (and their side-blanked copies) in batches, ``inference_mode``,
  channels-last, weights kept warm in the worker between scans.

``--path core`` (the per-gland ``fast`` preset through the Django-free core): the same 512x512x100 series in
memory; a verdict = CT check, box proposal, per-gland 2.5D images, the 5-fold ensemble of the `fast` preset on
both sides in one batch with evidence maps (``inference.ml.verdict.gland_verdict``), each runtime (eager torch,
ONNX Runtime) timed warm beside the one-by-one baseline on the same images and weights.

Usage: ``python benchmarks/bench_predict.py [--path app|core] [--folds 5] [--backbone efficientnet_b1]
[--threads 2]``
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


class OneByOne:
    """Baseline: fold models one by one, image by image."""

    def __init__(self, models):
        self.models = [m.eval() for m in models]

    def predict(self, images):
        import numpy as np
        import torch

        out = np.empty((len(images), len(self.models)), np.float32)
        with torch.no_grad():
            for f, m in enumerate(self.models):
                for i in range(len(images)):
                    out[i, f] = torch.sigmoid(m(torch.from_numpy(images[i:i + 1]))).item()
        return out


class Timed:
    def __init__(self, inner):
        self.inner, self.seconds, self.images = inner, 0.0, 0

    def predict(self, images):
        t = time.perf_counter()
        out = self.inner.predict(images)
        self.seconds += time.perf_counter() - t
        self.images += len(images)
        return out


def big_series():
    """The real CT resampled to 512x512 in-plane, its last 100 slices (3 mm): ``(Volume, affine)``."""
    import numpy as np
    from scipy import ndimage

    sys.path.insert(0, str(REPO / "scripts"))
    import fetch_fixtures

    from inference.ml.volume import Volume as Vol
    from inference.ml.volume import load_nifti

    fetch_fixtures.main()
    ct = load_nifti(fetch_fixtures.paths()["example_ct"])
    src = ct.array[ct.shape[0] - 100:].astype(np.float32)
    factors = (1.0, 512 / src.shape[1], 512 / src.shape[2])
    big = np.rint(ndimage.zoom(src, factors, order=1)).astype(np.int16)
    affine = ct.affine.copy()
    affine[:3, 3] = ct.affine[:3, :3] @ np.array([0, 0, ct.shape[0] - 100]) + ct.affine[:3, 3]
    affine[:3, 0] /= factors[2]
    affine[:3, 1] /= factors[1]
    return Vol(big, affine)


def core_bench(args) -> None:
    """Warm verdict time through the core, each runtime, and the one-by-one baseline."""
    import statistics

    import torch

    from inference.ml.assessability import check_ct
    from inference.ml.ensemble import load_ensemble, onnx_available
    from inference.ml.images25d import build_scan_images
    from inference.ml.presets import preset_config
    from inference.ml.proposals import propose
    from inference.ml.training import model_for
    from inference.ml.verdict import gland_verdict

    torch.set_num_threads(args.threads)
    vol = big_series()
    cfg = preset_config("fast")
    tmp = Path(tempfile.mkdtemp(prefix="bench-predict-core-"))
    paths = []
    for k in range(args.folds):
        torch.manual_seed(k)
        m, used = model_for(cfg, "auto")  # the preset's pretrained weights (the same for every fold: speed only)
        paths.append(tmp / f"fold{k}" / "best.pt")
        paths[-1].parent.mkdir()
        torch.save(m.state_dict(), paths[-1])

    def verdict(ensemble) -> dict:
        t = [time.perf_counter()]
        assert check_ct(vol, "CT") == ""
        prop = propose(vol)
        t.append(time.perf_counter())
        sides = build_scan_images(vol, prop.boxes, cfg)
        t.append(time.perf_counter())
        v = gland_verdict(sides, ensemble, 0.5, top_k=2, evidence=3)
        t.append(time.perf_counter())
        return {"total": t[3] - t[0], "propose": t[1] - t[0], "images": t[2] - t[1], "model": t[3] - t[2],
                "n": sum(len(s.images) for s in sides.values()), "verdict": v.verdict}

    def warm(ensemble) -> dict:
        runs = [verdict(ensemble) for _ in range(args.repeat)]
        return {k: statistics.median([r[k] for r in runs]) if k not in ("verdict",) else runs[0][k] for k in runs[0]}

    print(f"series {vol.shape[::-1]} (i, j, k); {args.folds}-fold {cfg['backbone']} {cfg['input_side_px']} px per "
          f"gland ({used or 'random'}); {torch.get_num_threads()} threads, torch {torch.__version__}")
    results = {}
    for runtime in ("torch", "onnx"):
        if runtime == "onnx" and not onnx_available():
            print("onnx: ONNX Runtime not installed")
            continue
        t = time.perf_counter()
        ens = load_ensemble(paths, cfg, device="cpu", runtime=runtime)
        verdict(ens)  # the first call pays the warm-up
        cold = time.perf_counter() - t
        results[runtime] = r = warm(ens)
        print(f"ours {runtime:<6} cold {cold:6.2f} s (load{', export' if runtime == 'onnx' else ''} + first verdict); "
              f"warm {r['total']:5.2f} s = propose {r['propose']:.2f} + images {r['images']:.2f} + ensemble with "
              f"evidence {r['model']:.2f} ({r['n']} images x {args.folds} folds)   target <= 3 s: "
              f"{'met' if r['total'] <= 3 else 'NOT met'}")
    if args.skip_baseline:
        return
    models = []
    for p in paths:
        m, _ = model_for(cfg)
        m.load_state_dict(torch.load(p, map_location="cpu", weights_only=True))
        models.append(m)
    base = verdict(OneByOne(models))
    print(f"baseline (folds one by one, batch 1, eager): {base['total']:5.2f} s, ensemble {base['model']:.2f} s")
    for runtime, r in results.items():
        print(f"ratio baseline/ours ({runtime}): total {base['total'] / r['total']:.2f}x, "
              f"model {base['model'] / r['model']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--backbone", default="efficientnet_b1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--side-px", type=int, default=120)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--path", choices=("app", "core"), default="app")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.path == "core":
        core_bench(args)
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    os.environ.update(ADRENAL_DATA_DIR=str(tmp), ADRENAL_LOCAL_SECRET="1", DATABASE_URL=f"sqlite:///{tmp}/db.sqlite3",
                      CELERY_BROKER_URL=os.environ.get("BENCH_BROKER_URL", "memory://"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adrenal_site.settings")
    import django

    django.setup()
    import numpy as np
    import torch
    from django.conf import settings
    from django.core.management import call_command
    from scipy import ndimage

    torch.set_num_threads(args.threads)
    call_command("migrate", verbosity=0)

    sys.path.insert(0, str(REPO / "scripts"))
    import fetch_fixtures

    fetch_fixtures.main()
    from adrenal_site.jobs.models import Job
    from adrenal_site.jobs.runner import run_job
    from annotations.models import Dataset, Patient, Series, Study, Volume
    from django.contrib.auth.models import User
    from inference.ml.networks import build_model
    from inference.ml.volume import Volume as Vol
    from inference.ml.volume import load_nifti, save_nifti
    from inference.models import DatasetSplit, FoldRun, Prediction, TrainingRun
    from inference.services import ensembles, runs
    from inference.tasks import predict_job, submit_prediction

    # a 512x512x100 series from the real CT
    ct = load_nifti(fetch_fixtures.paths()["example_ct"])
    src = ct.array[ct.shape[0] - 100:].astype(np.float32)
    factors = (1.0, 512 / src.shape[1], 512 / src.shape[2])
    big = np.rint(ndimage.zoom(src, factors, order=1)).astype(np.int16)
    affine = ct.affine.copy()
    affine[:3, 3] = ct.affine[:3, :3] @ np.array([0, 0, ct.shape[0] - 100]) + ct.affine[:3, 3]
    affine[:3, 0] /= factors[2]
    affine[:3, 1] /= factors[1]
    rel = "volumes/bench.nii.gz"
    save_nifti(Vol(big, affine), Path(settings.MEDIA_ROOT) / rel)

    user = User.objects.create_superuser("bench", password="x")
    ds = Dataset.objects.create(name="bench")
    patient = Patient.objects.create(dataset=ds, pseudo_id="B1")
    study = Study.objects.create(patient=patient, study_uid="1.2.3")
    series = Series.objects.create(study=study, series_uid="1.2.3.4", modality="CT")
    Volume.objects.create(series=series, file=rel, shape=list(big.shape), spacing_mm=Vol(big, affine).spacing.tolist(),
                          affine=affine.tolist())
    split = DatasetSplit.objects.create(dataset=ds, test_patients=[], folds=[[]] * args.folds)
    config = {"backbone": args.backbone, "side_px": args.side_px, "slice_mm": 3.0}
    done = Job.objects.create(kind="train", task_name="inference.tasks.train_run_job", status="succeeded")
    run = TrainingRun.objects.create(dataset=ds, split=split, preset="paper", config=config, job=done,
                                     operating_value=0.5, objective="accuracy", promoted=True, version=1,
                                     artifacts_dir="runs/bench")
    torch.manual_seed(0)
    for k in range(args.folds):
        path = Path(settings.MEDIA_ROOT) / "runs/bench" / f"fold{k}" / "best.pt"
        path.parent.mkdir(parents=True)
        torch.save(build_model(args.backbone)[0].state_dict(), path)
        FoldRun.objects.create(run=run, fold=k, weights=f"runs/bench/fold{k}/best.pt")

    def submit_to_stored() -> tuple[float, Prediction]:
        t = time.perf_counter()
        job = submit_prediction(user, series_id=series.pk)
        run_job(predict_job.job_fn, job.pk)
        p = Prediction.objects.get(job=job)
        return time.perf_counter() - t, p

    print(f"series {big.shape[::-1]} (i, j, k), {args.folds}-fold {args.backbone}, random init, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    cold, p = submit_to_stored()  # loads the weights
    timed = Timed(ensembles.ensemble_for(run))
    ensembles._ENSEMBLES[next(iter(ensembles._ENSEMBLES))] = timed
    warm, p = submit_to_stored()
    n_images = timed.images // 3
    print(f"verdict: {p.verdict} (probability {p.probability}, {n_images} 2.5D images, x3 with side-blanked copies)")
    print(f"ours     cold (weights loaded): {cold:6.2f} s from submission to stored verdict")
    print(f"ours     warm (worker):         {warm:6.2f} s, model {timed.seconds:.2f} s = "
          f"{100 * timed.seconds / warm:.0f}% of it   target <= 10 s: {'met' if warm <= 10 else 'NOT met'}")
    if args.skip_baseline:
        return
    models = [build_model(args.backbone)[0] for _ in range(args.folds)]
    for m, path in zip(models, runs.weight_paths(run)):
        m.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    base = Timed(OneByOne(models))
    ensembles._ENSEMBLES[next(iter(ensembles._ENSEMBLES))] = base
    baseline, _ = submit_to_stored()
    print(f"baseline (folds one by one, batch 1): {baseline:6.2f} s, model {base.seconds:.2f} s = "
          f"{100 * base.seconds / baseline:.0f}% of it")
    print(f"ratio baseline/ours: total {baseline / warm:.2f}x, model {base.seconds / timed.seconds:.2f}x")


if __name__ == "__main__":
    main()
