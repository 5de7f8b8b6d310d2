"""The DICOM node against a real PACS (Debian's Orthanc on free local ports, the app as one of its modalities),
with the listener and a Celery worker as subprocesses on the test database.

Orthanc routes a study of real CT to the node; the node imports it once stable, judges each scan with the
promoted model and stores an SR and key images back into the same study in Orthanc; the SR passes dciodvfy
and reads back with highdicom. Unknown AEs are refused. A listener killed mid-study and restarted still
answers the study, and results for a PACS that is down when they are ready arrive once it is up."""
from __future__ import annotations

import io
import time
from pathlib import Path

import pydicom
import pytest
from django.conf import settings
from pynetdicom import AE
from pynetdicom.sop_class import ComprehensiveSRStorage, CTImageStorage, Verification

from adrenal_site.jobs.models import Job
from inference.ml.reporting import read_report
from inference.ml.reporting.findings import RESEARCH_STATEMENT
from inference.models import DicomResult, DicomSend, Prediction, ReceivedInstance, ReceivedStudy
from tests.conftest import Worker, purge_broker, wait_for
from tests.plugins.pacs import Listener, Orthanc, dciodvfy, free_port, write_real_ct_study

pytestmark = [pytest.mark.worker, pytest.mark.slow]

STABLE_S = 3


class Node:
    """Orthanc (the PACS, sending to "adrenal"), the node's listener and a worker, wired by environment and
    shared by this module's tests (each test's rows are flushed after it, the processes stay). Results go back
    to the sending peer (``ADRENAL_DICOM_RESULTS_TO`` unset)."""

    def __init__(self, tmp_path: Path, monkeypatch):
        self.tmp = tmp_path
        self.port = free_port()
        self.pacs = Orthanc(tmp_path / "orthanc", modalities={"adrenal": ["ADRENAL", "127.0.0.1", self.port]})
        self.env = {
            "ADRENAL_DICOM_PORT": str(self.port), "ADRENAL_DICOM_AET": "ADRENAL",
            "ADRENAL_DICOM_PEERS": f"ORTHANC@127.0.0.1:{self.pacs.dicom_port},ELSEWHERE@192.0.2.7:104",
            "ADRENAL_DICOM_STABLE_SECONDS": str(STABLE_S), "ADRENAL_DICOM_SPOOL": str(tmp_path / "spool"),
            "ADRENAL_DICOM_RETRY_SECONDS": "1", "ADRENAL_DICOM_DATASET": "Received", "ADRENAL_DICOM_RESULTS_TO": "",
        }
        for key, value in self.env.items():  # the worker subprocess inherits them
            monkeypatch.setenv(key, value)
        self.listener = Listener(self.env, tmp_path / "listener.log")
        self.worker = Worker(name="nodeworker")

    def start(self) -> Node:
        self.pacs.start()
        self.worker.log.unlink(missing_ok=True)
        purge_broker()
        self.worker.start()
        self.listener.start()
        return self

    def stop(self) -> None:
        self.listener.stop()
        self.worker.stop()
        self.pacs.stop()

    def logs(self) -> str:
        return (f"--- listener\n{self.listener.log.read_text()[-3000:]}\n--- worker\n"
                f"{self.worker.log.read_text()[-5000:]}")


@pytest.fixture(scope="module")
def shared_node(django_db_setup, django_db_blocker, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp, django_db_blocker.unblock():
        n = Node(tmp_path_factory.mktemp("node"), mp).start()
        yield n
        n.stop()


@pytest.fixture
def node(shared_node, transactional_db, settings):
    """The shared node, with this process' settings matching its environment."""
    settings.ADRENAL_DICOM_SPOOL = Path(shared_node.env["ADRENAL_DICOM_SPOOL"])
    settings.ADRENAL_DICOM_RESULTS_TO = ""
    settings.ADRENAL_DICOM_PEERS = shared_node.env["ADRENAL_DICOM_PEERS"]
    yield shared_node
    # leave nothing running into the next test's flush
    wait_for(lambda: not Job.objects.filter(status__in=Job.ACTIVE).exists(), 120, 0.5, "jobs to settle")


def _finished_delivery(study_uid: str, timeout: float = 300) -> ReceivedStudy:
    """The study's delivery once its job (import, verdicts, answer) finished."""
    return wait_for(lambda: ReceivedStudy.objects.filter(study_uid=study_uid, job__status__in=Job.FINISHED).first(),
                    timeout, 0.5, "the delivery's job to finish")


def _results_in(pacs: Orthanc, study_uid: str, modality: str) -> list[dict]:
    return [s for s in pacs.series_of(study_uid) if s["MainDicomTags"].get("Modality") == modality]


def test_study_routed_from_orthanc_comes_back_with_sr_and_key_images(node, ct_study, promoted_model, client_as,
                                                                      capsys):
    pacs, uid = node.pacs, ct_study["study_uid"]
    abdomen_uid, abdomen_files = ct_study["abdomen"]
    slab_uid, slab_files = ct_study["slab"]
    chest_uid, chest_files = ct_study["chest"]
    files = abdomen_files + slab_files + chest_files
    pacs.upload(files)
    t0 = time.monotonic()
    job = pacs.store_to("adrenal", [pacs.study(uid)])
    wait_for(lambda: pacs.job(job["ID"])["State"] in ("Success", "Failure"), 120, 0.5, "Orthanc's store job")
    assert pacs.job(job["ID"])["State"] == "Success", pacs.job(job["ID"])
    sent_s = time.monotonic() - t0

    delivery = _finished_delivery(uid)
    assert delivery.job.status == "succeeded", node.logs()
    answer = Job.objects.get(parent=delivery.job, kind="dicom_answer")
    assert answer.status == "succeeded", node.logs()
    wait_for(lambda: not DicomSend.objects.pending().exists(), 60, 0.5, "deliveries")
    round_trip_s = time.monotonic() - t0
    with capsys.disabled():
        print(f"\n[dicom node] PACS -> verdict -> PACS: {round_trip_s:.1f} s for {len(files)} instances in 3 series "
              f"(sending {sent_s:.1f} s, stable wait {STABLE_S} s)")

    # imported once into the Received dataset, every series judged, every result delivered on its first attempt
    assert delivery.dataset.name == "Received" and delivery.instances.count() == len(files)
    assert delivery.closed_at and delivery.imported_at and delivery.calling_aet == "ORTHANC"
    assert not (Path(settings.ADRENAL_DICOM_SPOOL) / delivery.folder).exists()  # spool emptied, headers kept
    predictions = {p.series.series_uid: p for p in Prediction.objects.filter(job__parent=delivery.job)}
    assert set(predictions) == {abdomen_uid, slab_uid, chest_uid}
    abdomen, chest = predictions[abdomen_uid], predictions[chest_uid]
    assert abdomen.verdict == "abnormal" and abdomen.flagged_slices_mm
    assert chest.verdict == "not_assessable" and "not covered" in chest.reason
    key_images = {p.pk: min(6, len(p.flagged_slices_mm)) for p in predictions.values()}
    results = DicomResult.objects.filter(prediction__in=predictions.values())
    assert results.count() == 3 + sum(key_images.values()) == DicomSend.objects.count()
    assert all(s.delivered_at and s.attempts == 1 and s.log[0]["ok"] for s in DicomSend.objects.all())

    # in Orthanc: the same study now holds one SR per scan and the key images of each scan with flagged slices
    srs, scs = _results_in(pacs, uid, "SR"), _results_in(pacs, uid, "OT")
    assert len(srs) == 3 and sorted(len(s["Instances"]) for s in scs) == sorted(n for n in key_images.values() if n)
    abdomen_frame = pydicom.dcmread(abdomen_files[0]).FrameOfReferenceUID
    for series in srs:
        path = node.tmp / f"{series['ID']}.dcm"
        path.write_bytes(pacs.instance_file(series["Instances"][0]))
        errors, output = dciodvfy(path)
        assert not errors, output
        ds = pydicom.dcmread(path)
        p = next(p for p in predictions.values() if results.filter(prediction=p,
                                                                   sop_instance_uid=ds.SOPInstanceUID).exists())
        with capsys.disabled():
            print(f"[dicom node] dciodvfy of the SR on series {p.series.series_description!r} ({p.verdict}):\n"
                  f"{output.strip()}")
        assert ds.StudyInstanceUID == uid and ds.PatientID == "NODE-0001" and ds.PatientName == "Test^Adrenal"
        report = read_report(ds)
        assert report["verdict"] == p.verdict and RESEARCH_STATEMENT in report["texts"]
        assert report["model"]["name"].endswith(f"run {promoted_model.pk}") and report["model"]["version"] == "1"
        assert report["cautions"] == p.cautions  # the verdict's cautions reach the PACS
        assert p.cautions or p is chest, "the model was trained on finer scans than this 3 mm CT"
        if p is chest:
            assert report["sides"] == {} and f"Reason: {chest.reason}" in report["texts"]
            continue
        assert report["fraction"] == pytest.approx(p.fraction) and report["operating_value"] == pytest.approx(0.5)
        assert report["probability"] == pytest.approx(p.probability)
        boxes = {b.side: b for b in p.series.boxes.all()}
        assert set(report["sides"]) == set(boxes) and (p is not abdomen or set(boxes) == {"R", "L"})
        for side, got in report["sides"].items():
            assert got["finding"] == ("abnormal" if p.sides[side] >= 0.5 else "normal")
            assert got["score"] == pytest.approx(p.sides[side]) and got["series_uid"] == p.series.series_uid
            lo, hi = got["polygons"][0].min(axis=0), got["polygons"][1].max(axis=0)
            assert lo == pytest.approx(boxes[side].lps_min) and hi == pytest.approx(boxes[side].lps_max)
            if p is abdomen:
                assert got["frame_of_reference_uid"] == abdomen_frame
    abdomen_sops = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in abdomen_files}
    abdomen_scs = next(s for s in scs if results.filter(prediction=abdomen, series_uid=s["MainDicomTags"]
                                                        ["SeriesInstanceUID"]).exists())
    for instance in abdomen_scs["Instances"][:2]:
        path = node.tmp / f"{instance}.dcm"
        path.write_bytes(pacs.instance_file(instance))
        errors, output = dciodvfy(path)
        assert not errors, output
        sc = pydicom.dcmread(path)
        assert sc.StudyInstanceUID == uid and sc.BurnedInAnnotation == "YES" and sc.PhotometricInterpretation == "RGB"
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID in abdomen_sops

    # the same objects download from the prediction's API, with the deliveries logged
    c = client_as("admin")
    doc = c.get(f"/api/predictions/{abdomen.pk}/dicom/").json()
    assert [r["kind"] for r in doc["results"]] == ["sr"] + ["sc"] * 6
    assert all(s["delivery"] == "delivered" and s["attempts"] == 1 for s in doc["sends"])
    sr = doc["results"][0]
    r = c.get(f"/api/predictions/{abdomen.pk}/dicom/{sr['sop_instance_uid']}.dcm")
    assert r.status_code == 200 and r["Content-Type"] == "application/dicom"
    assert pydicom.dcmread(io.BytesIO(b"".join(r.streaming_content))).SOPInstanceUID == sr["sop_instance_uid"]
    assert c.get(f"/api/predictions/{abdomen.pk}/dicom.zip")["Content-Type"] == "application/zip"


def test_listener_refuses_unknown_aes_and_non_ct(node):
    def associate(aet: str, *contexts):
        ae = AE(ae_title=aet)
        for c in contexts or (Verification,):
            ae.add_requested_context(c)
        return ae.associate("127.0.0.1", node.port, ae_title="ADRENAL")

    stranger = associate("STRANGER")
    assert stranger.is_rejected and not stranger.is_established
    # a known AE title calling from another host than its configured one is refused as well
    assert associate("ELSEWHERE").is_rejected
    known = associate("ORTHANC", Verification, CTImageStorage, ComprehensiveSRStorage)
    assert known.is_established
    try:
        assert known.send_c_echo().Status == 0x0000
        accepted = {str(cx.abstract_syntax) for cx in known.accepted_contexts}
        assert CTImageStorage in accepted and ComprehensiveSRStorage not in accepted
    finally:
        known.release()
    assert "refused association from 'STRANGER'" in node.listener.log.read_text()
    assert "refused association from 'ELSEWHERE'" in node.listener.log.read_text()
    assert not ReceivedStudy.objects.exists() and not ReceivedInstance.objects.exists()
    assert node.pacs.post("/modalities/adrenal/echo", {}) == {}  # and Orthanc's own C-ECHO passes


def test_killed_listener_and_a_pacs_down_when_results_are_ready(node, realct, tmp_path, promoted_model):
    study = write_real_ct_study(tmp_path / "study", realct, patient_id="NODE-0002")
    pacs, uid = node.pacs, study["study_uid"]
    abdomen_uid, files = study["abdomen"]
    ids = pacs.upload(files)
    job = pacs.store_to("adrenal", ids)
    # kill the listener while Orthanc is sending: some instances were acknowledged, the study is not complete
    wait_for(lambda: ReceivedInstance.objects.count() >= 10, 60, 0.01, "the first instances")
    node.listener.kill()
    assert ReceivedInstance.objects.count() < len(files)
    wait_for(lambda: pacs.job(job["ID"])["State"] in ("Failure", "Success"), 60, 0.5, "Orthanc's job to end")
    assert pacs.job(job["ID"])["State"] == "Failure"
    assert not list(Path(settings.ADRENAL_DICOM_SPOOL).rglob(".tmp-*"))  # no half-written instance
    # restarted, the listener keeps the open delivery; Orthanc sends the study again
    node.listener.start()
    again = pacs.store_to("adrenal", ids)
    wait_for(lambda: pacs.job(again["ID"])["State"] in ("Failure", "Success"), 120, 0.5, "the second sending")
    assert pacs.job(again["ID"])["State"] == "Success"
    # then the PACS goes down before the results are ready
    pacs.stop()

    delivery = _finished_delivery(uid)
    assert delivery.job.status == "succeeded", node.logs()
    assert ReceivedStudy.objects.filter(study_uid=uid).count() == 1  # one delivery, nothing lost or doubled
    assert delivery.instances.count() == len(files)
    p = Prediction.objects.get(job__parent=delivery.job)
    assert p.series.series_uid == abdomen_uid and p.series.volume.shape[0] == len(files)

    # every send failed once and waits for its retry; the PACS comes back and gets them
    wait_for(lambda: DicomSend.objects.filter(attempts__gte=1).count() == 7, 60, 0.5, "first attempts")
    sends = list(DicomSend.objects.all())
    assert all(s.delivered_at is None and s.last_error and not s.log[0]["ok"] for s in sends)
    pacs.start()
    wait_for(lambda: not DicomSend.objects.pending().exists(), 90, 0.5, "the retried deliveries")
    sends = list(DicomSend.objects.all())
    assert len(sends) == 1 + 6 and all(s.delivered_at and s.attempts >= 2 and s.log[-1]["ok"] for s in sends)
    # the send job records its end just after the last delivery: wait for it rather than race it
    wait_for(lambda: Job.objects.filter(kind="dicom_send", status="succeeded").exists(), 30, 0.5, "the send job")
    assert len(_results_in(pacs, uid, "SR")) == 1 and len(_results_in(pacs, uid, "OT")) == 1
