"""``python manage.py pacs_query [--patient ID] [--date D] [--modality CT] [--description TEXT] [--series]``."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from inference.services.dicom_node import pull
from inference.services.dicom_node.config import ConfigError, parse_peer
from inference.services.dicom_node.scu import AssociationFailed


class Command(BaseCommand):
    help = ("Find studies (or series) in the PACS: C-FIND against ADRENAL_PACS, or QIDO-RS when "
            "ADRENAL_DICOMWEB_URL is set. Wildcards (*, ?) and date ranges (20240101-20240131) as DICOM has them.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--patient", default="", help="PatientID")
        parser.add_argument("--name", default="", help="PatientName, e.g. 'DOE^*'")
        parser.add_argument("--date", default="", help="StudyDate: YYYYMMDD or YYYYMMDD-YYYYMMDD")
        parser.add_argument("--modality", default="", help="e.g. CT (ModalitiesInStudy, or Modality with --series)")
        parser.add_argument("--description", default="", help="Study (or with --series: series) description")
        parser.add_argument("--study", default="", help="StudyInstanceUID (with --series: the series of that study)")
        parser.add_argument("--series", action="store_true", help="list series instead of studies")
        parser.add_argument("--pacs", default=None, help="AET@host:port (default ADRENAL_PACS)")
        parser.add_argument("--dicomweb", default=None, help="DICOMweb root URL (default ADRENAL_DICOMWEB_URL)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **opts) -> None:
        level = "series" if opts["series"] else "study"
        try:
            keys = pull.query_keys(patient_id=opts["patient"], patient_name=opts["name"], date=opts["date"],
                                   modality=opts["modality"], description=opts["description"],
                                   study_uid=opts["study"], level=level)
            peer = parse_peer(opts["pacs"], "--pacs") if opts["pacs"] else None
            matches = pull.query(level, keys, peer=peer, url=opts["dicomweb"])
        except (ConfigError, AssociationFailed, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f"DICOMweb query failed: {exc}") from exc
        if opts["json"]:
            self.stdout.write(json.dumps({"level": level, "matches": matches}, indent=2))
            return
        for m in matches:
            if level == "study":
                self.stdout.write(f"{m.get('StudyInstanceUID', '')}  {m.get('StudyDate', '')}  "
                                  f"{m.get('PatientID', '')}  {m.get('ModalitiesInStudy', '')}  "
                                  f"{m.get('StudyDescription', '')}  ({m.get('NumberOfStudyRelatedInstances', '?')} "
                                  f"instances)")
            else:
                self.stdout.write(f"{m.get('SeriesInstanceUID', '')}  {m.get('Modality', '')}  "
                                  f"#{m.get('SeriesNumber', '')}  {m.get('SeriesDescription', '')}  "
                                  f"({m.get('NumberOfSeriesRelatedInstances', '?')} instances)")
        self.stdout.write(f"{len(matches)} match(es)")
