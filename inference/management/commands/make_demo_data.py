"""``python manage.py make_demo_data OUT --patients N --abnormal-fraction F --seed S [--preview]
[--profile default|demo|tiny] [--base synthetic|real] [--workers W]``.

Writes a synthetic abdominal-CT cohort as raw DICOM (``OUT/{normal,abnormal}/<PatientName>/DICOM/...``)
with ``OUT/ground_truth.csv`` and, with ``--preview``, ``OUT/preview/<PatientName>.png`` montages.
Profiles: ``default`` (512x512, 0.6-0.95 mm pixels, 1-5 mm slices, every coverage), ``demo`` (512x512,
3-5 mm slices, abdomen/upper abdomen only: what ``make run`` loads), ``tiny`` (256x256, 5 mm, for tests).
``--base real`` inserts the lesions into the cached real TotalSegmentator example CT instead.
"""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from synthetic import make_cohort


class Command(BaseCommand):
    help = "Write a synthetic abdominal-CT cohort as DICOM with ground_truth.csv."

    def add_arguments(self, parser) -> None:
        parser.add_argument("out", help="output folder")
        parser.add_argument("--patients", type=int, default=20)
        parser.add_argument("--abnormal-fraction", type=float, default=0.5)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--preview", action="store_true", help="write a PNG montage per patient")
        parser.add_argument("--profile", default="default", choices=["default", "demo", "tiny"])
        parser.add_argument("--base", default="synthetic", choices=["synthetic", "real"])
        parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")

    def handle(self, *args, **o) -> None:
        t0 = time.perf_counter()
        try:
            rows = make_cohort(o["out"], o["patients"], o["abnormal_fraction"], o["seed"], preview=o["preview"],
                               profile=o["profile"], base=o["base"], workers=o["workers"])
        except (ValueError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        dt = time.perf_counter() - t0
        patients = {r.patient: r.label for r in rows}
        n_abn = sum(1 for v in patients.values() if v == "abnormal")
        self.stdout.write(f"wrote {len(patients)} patients ({n_abn} abnormal), {len(rows)} series to {o['out']} "
                          f"in {dt:.1f} s; ground truth: {o['out']}/ground_truth.csv")
