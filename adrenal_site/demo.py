"""The demo dataset loaded by `make run` into an empty database: a synthetic cohort (profile "demo",
generated once under DATA_DIR/demo-cohort) imported as the dataset "Demo"."""
from __future__ import annotations

import os

DEMO_PATIENTS = int(os.environ.get("ADRENAL_DEMO_PATIENTS", "16"))


def load_demo_dataset() -> str:
    """Load the demo dataset when the database has none. Returns what it did, for the console."""
    from django.conf import settings
    from django.core.management import call_command

    from annotations.models import Dataset

    if Dataset.objects.exists():
        return "demo data: the database already has datasets; loading nothing"
    from synthetic import make_cohort

    out = settings.DATA_DIR / "demo-cohort"
    if not (out / "ground_truth.csv").exists():
        print(f"demo data: generating {DEMO_PATIENTS} synthetic patients in {out} ...", flush=True)
        make_cohort(out, DEMO_PATIENTS, 0.5, 0, profile="demo")
    # The demo pipeline job proposes boxes itself, right before building images from them.
    settings.ADRENAL_AUTO_PROPOSE = False
    call_command("import_studies", str(out), dataset="Demo", sync=True)
    dataset = Dataset.objects.get(name="Demo")
    from django.contrib.auth import get_user_model

    dataset.members.add(*get_user_model().objects.filter(username__in=["clinician", "lead", "admin"]))
    from django.db import transaction

    from inference.tasks.demo import start_demo_pipeline

    with transaction.atomic():
        job = start_demo_pipeline(dataset)
    return (f"demo data: imported the synthetic cohort {out} as dataset 'Demo' (ground truth: "
            f"{out}/ground_truth.csv); job #{job.pk} proposes boxes, builds 2.5D images and trains a 'fast' "
            f"model in the background (evaluated and promoted when it finishes)")
