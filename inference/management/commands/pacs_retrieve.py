"""``python manage.py pacs_retrieve STUDY_UID --dataset NAME [--series UID ...] [--method get|move]``."""
from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from adrenal_site.jobs.runner import run_now, wait
from annotations.models import Dataset
from inference.models import ReceivedStudy
from inference.services.dicom_node import pull
from inference.services.dicom_node.config import ConfigError, parse_peer
from inference.services.dicom_node.scu import AssociationFailed
from inference.tasks import dicom_study_job, start_dicom_study


class Command(BaseCommand):
    help = ("Retrieve a study (or some series) from the PACS into a dataset: C-GET (default) or C-MOVE from "
            "ADRENAL_PACS, or WADO-RS when ADRENAL_DICOMWEB_URL is set; then imported like any study (boxes "
            "proposed). --judge also queues verdicts with the promoted model (needs a worker).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("study", help="StudyInstanceUID")
        parser.add_argument("--dataset", required=True, help="dataset name (made if missing)")
        parser.add_argument("--series", nargs="*", default=None, help="only these SeriesInstanceUIDs")
        parser.add_argument("--method", choices=("get", "move", "dicomweb"), default=None,
                            help="default: dicomweb when a URL is configured, else get")
        parser.add_argument("--pacs", default=None, help="AET@host:port (default ADRENAL_PACS)")
        parser.add_argument("--dicomweb", default=None, help="DICOMweb root URL (default ADRENAL_DICOMWEB_URL)")
        parser.add_argument("--move-aet", default="", help="C-MOVE destination AE title (known to the PACS)")
        parser.add_argument("--move-port", type=int, default=0, help="port to receive the C-MOVE on")
        parser.add_argument("--judge", action="store_true", help="queue verdicts for the retrieved scans")
        parser.add_argument("--sync", action="store_true", help="import in this process (no worker needed)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **opts) -> None:
        if opts["sync"] and opts["judge"]:
            raise CommandError("--judge queues verdict jobs for a worker; leave out --sync")
        dataset, created = Dataset.objects.get_or_create(name=opts["dataset"])
        url = opts["dicomweb"] if opts["dicomweb"] is not None else settings.ADRENAL_DICOMWEB_URL
        method = opts["method"] or ("dicomweb" if url else "get")

        def fail(message: str, delivery=None) -> CommandError:
            """Nothing retrieved: the empty delivery and a dataset made for it now are removed, so neither an
            empty dataset nor a delivery "receiving" for ever is left behind."""
            if delivery is not None and not delivery.instances.exists():
                delivery.delete()
            if created and not dataset.patients.exists() and not ReceivedStudy.objects.filter(dataset=dataset).exists():
                dataset.delete()
            return CommandError(message)

        try:
            peer = parse_peer(opts["pacs"], "--pacs") if opts["pacs"] else None
            delivery, counts = pull.retrieve(
                opts["study"], dataset=dataset, series_uids=opts["series"] or None, method=method, peer=peer,
                url=url if method == "dicomweb" else "", judge=opts["judge"], move_aet=opts["move_aet"],
                move_port=opts["move_port"])
        except (ConfigError, AssociationFailed, pull.RetrieveFailed, ValueError) as exc:
            raise fail(str(exc)) from exc
        except OSError as exc:
            raise fail(f"retrieve failed: {exc}") from exc
        received = delivery.instances.count()
        if not received:
            raise fail(f"nothing retrieved for study {opts['study']} ({counts})", delivery)
        job = start_dicom_study(delivery, send=not opts["sync"])
        delivery.job = job
        delivery.save(update_fields=["job"])
        job = run_now(dicom_study_job, job) if opts["sync"] else wait(job)
        delivery.refresh_from_db()
        doc = {"delivery": delivery.pk, "dataset": dataset.name, "instances": received, "retrieve": counts,
               "job": job.pk, "status": job.status, "import": delivery.notes}
        if opts["json"]:
            self.stdout.write(json.dumps(doc, indent=2))
        else:
            self.stdout.write(f"{received} instances retrieved into dataset {dataset.name!r}: {delivery.notes} "
                              f"(job #{job.pk} {job.status})")
            if counts.get("series_not_ct"):
                self.stdout.write(f"{counts['series_not_ct']} series of the study not CT (dose reports, screen "
                                  "captures ...): not asked for")
            if counts.get("failed") or counts.get("warning"):  # status 0xB000: the PACS sent the rest
                self.stdout.write(f"the PACS reported {counts.get('failed', 0)} failed and {counts.get('warning', 0)} "
                                  "warning sub-operation(s): instances it did not send; the import judged each series "
                                  "from what arrived")
        if job.status == "failed":
            raise CommandError(f"import job #{job.pk} failed: {job.message}")
