"""The DICOM node's pieces without a PACS: settings parsing, the retry policy, the scheduler closing quiet
deliveries (and leaving ones with new instances), a delivery logged attempt by attempt against a dead port,
findings read from a Prediction, the API refusing results for a scan that did not come from DICOM, the home
page panel for admins, ``promote`` from the command line, and the node's place in docker/compose.yml and
``make run``."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from pydicom.dataset import Dataset, FileMetaDataset

from adrenal_site.jobs.models import Job
from inference.models import DicomResult, DicomSend, Prediction, ReceivedInstance, ReceivedStudy
from inference.services.dicom_node import answers, config, scheduler, sending
from tests.conftest import REPO
from tests.factories import make_dataset, make_job, make_run, make_series, make_split
from tests.plugins.pacs import free_port


def test_peers_and_destinations_parse_or_name_the_problem(settings):
    peers = config.parse_peers(" PACS@10.0.0.5:104, MOD_2@pacs.example:11112 ,")
    assert [str(p) for p in peers] == ["PACS@10.0.0.5:104", "MOD_2@pacs.example:11112"]
    assert peers[0].matches("PACS", "10.0.0.5") and not peers[0].matches("PACS", "10.0.0.6")
    assert not peers[0].matches("OTHER", "10.0.0.5")
    assert config.parse_peer("ANY@*:104").matches("ANY", "192.0.2.1")
    for bad, why in (("PACS", "not AET@host:port"), ("PACS@host", "not AET@host:port"),
                     ("PACS@host:x", "is not a number"), ("A_VERY_LONG_AE_TITLE@h:1", "longer than 16"),
                     ("PACS@h:70000", "out of range")):
        with pytest.raises(config.ConfigError, match=why):
            config.parse_peer(bad)
    settings.ADRENAL_DICOM_PEERS, settings.ADRENAL_DICOM_RESULTS_TO = "PACS@10.0.0.5:104", ""
    assert str(config.results_destination("PACS")) == "PACS@10.0.0.5:104"  # back to the sender
    assert config.results_destination("STRANGER") is None
    settings.ADRENAL_DICOM_RESULTS_TO = "ARCHIVE@10.0.0.9:4242"
    assert str(config.results_destination("PACS")) == "ARCHIVE@10.0.0.9:4242"
    settings.ADRENAL_PACS = ""
    with pytest.raises(config.ConfigError, match="ADRENAL_PACS"):
        config.pacs()


def test_retry_delay_doubles_up_to_an_hour():
    assert [sending.retry_delay(n, 30).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert sending.retry_delay(20, 30) == timedelta(hours=1)


def _delivery(study_uid: str = "1.2.3", quiet_s: float = 100.0, **kw) -> ReceivedStudy:
    at = timezone.now() - timedelta(seconds=quiet_s)
    return ReceivedStudy.objects.create(study_uid=study_uid, calling_aet="PACS", first_received_at=at,
                                        last_received_at=at, **kw)


def _received_series(tmp_path: Path, study_uid: str, series_uid: str, n: int = 3) -> list[str]:
    """A CT series of ``n`` instances as the node holds one it received: a delivery with a row per instance and the
    series' kept header (``settings.ADRENAL_DICOM_SPOOL`` set by the caller); returns the SOP Instance UIDs."""
    import pydicom

    from inference.services.dicom_node import spool
    from tests.plugins.store import write_ct_series

    folder, _ = write_ct_series(tmp_path / "ct", n=n, study_uid=study_uid, series_uid=series_uid)
    delivery, sops = _delivery(study_uid), []
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        ReceivedInstance.objects.create(study=delivery, sop_instance_uid=ds.SOPInstanceUID,
                                        sop_class_uid=ds.SOPClassUID, series_uid=ds.SeriesInstanceUID,
                                        position=[float(v) for v in ds.ImagePositionPatient], path=f.name)
        sops.append(str(ds.SOPInstanceUID))
    spool.save_header(f)
    return sops


def test_scheduler_closes_quiet_deliveries_once(db):
    quiet, busy = _delivery("1.2.3", 100), _delivery("1.2.4", 1)
    retrieved = _delivery("1.2.5", 100, source=ReceivedStudy.Source.RETRIEVE)
    started = []

    def start(delivery):
        started.append(delivery.pk)
        return make_job("dicom_study", Job.Status.QUEUED)

    assert scheduler.close_quiet_deliveries(60, start) == [quiet.pk]
    assert scheduler.close_quiet_deliveries(60, start) == []  # closed once
    quiet.refresh_from_db(), busy.refresh_from_db(), retrieved.refresh_from_db()
    assert quiet.closed_at and quiet.job_id and quiet.phase == "queued" and started == [quiet.pk]
    assert busy.closed_at is None and busy.phase == "receiving" and retrieved.closed_at is None
    # a restarted listener gives deliveries left open a fresh window
    assert scheduler.grace_after_restart() == 1
    busy.refresh_from_db()
    assert timezone.now() - busy.last_received_at < timedelta(seconds=5)


def _prediction(settings, tmp_path, **fields) -> Prediction:
    settings.MEDIA_ROOT = tmp_path / "media"
    ds = make_dataset("Received")
    run = make_run(ds, make_split(ds), operating_value=0.4, version=2, objective="youden",
                   config={"backbone": "resnet18", "preset": "fast"})
    series = make_series(ds, "P1", study_uid="1.2.826.0.99.1", series_uid="1.2.826.0.99.1.2")
    job = make_job("predict", Job.Status.SUCCEEDED, task_name="inference.tasks.predict_job", queue="gpu")
    defaults = {"verdict": "abnormal", "probability": 0.7, "fraction": 0.45, "operating_value": 0.4,
                "sides": {"R": 0.5, "L": 0.1}, "flagged_slices_mm": [12.0, 15.0],
                "slice_scores": [[12.0, 0.8], [15.0, 0.6], [18.0, 0.2]]}
    return Prediction.objects.create(series=series, run=run, job=job, **{**defaults, **fields})


def test_findings_read_from_a_prediction(db, settings, tmp_path):
    p = _prediction(settings, tmp_path)
    f = answers.findings_of(p)
    assert (f.verdict, f.probability, f.fraction, f.operating_value) == ("abnormal", 0.7, 0.45, 0.4)
    assert f.sides["R"].abnormal is True and f.sides["L"].abnormal is False  # the verdict rule on each side
    assert f.sides["R"].box is None and f.flagged_slices_mm == (12.0, 15.0)
    assert f.model.name == f"adrenal-2.5d tiny run {p.run.pk}" and f.model.version == "2"
    assert f.model.parameters == {"backbone": "resnet18", "preset": "fast", "objective": "youden"}
    assert f.cautions == ()  # a run without a recorded acquisition range gives none
    p.cautions = ["pixel spacing 3.00 mm is coarser than the model's training scans (0.70-0.90 mm, 20 scans)"]
    assert answers.findings_of(p).cautions == tuple(p.cautions)
    p.verdict, p.reason, p.sides = "not_assessable", "adrenal region not covered", {}
    f = answers.findings_of(p)
    assert f.sides == {} and f.summary() == "Not assessable: adrenal region not covered"
    with pytest.raises(answers.NoSource, match="not received or retrieved"):
        answers.make_results(p)


def test_results_of_a_scan_not_from_the_pacs_answer_404(db, settings, tmp_path, client_as):
    p = _prediction(settings, tmp_path)
    settings.ADRENAL_DICOM_SPOOL = tmp_path / "spool"
    c = client_as("admin")
    r = c.get(f"/api/predictions/{p.pk}/dicom/")
    assert r.status_code == 404 and "not received or retrieved" in r.json()["detail"]
    assert c.get(f"/api/predictions/{p.pk}/dicom.zip").status_code == 404
    assert client_as("clinician").get(f"/api/predictions/{p.pk}/dicom/").status_code == 404  # not a member


def test_results_from_a_header_that_cannot_be_read_answer_422_naming_it(db, settings, tmp_path, client_as):
    """A kept source header that is no DICOM (a disk fault, a file cut short) made the results API answer 500;
    it answers 422 naming the series and the cause, for the list and the zip alike."""
    from inference.services.dicom_node import spool

    p = _prediction(settings, tmp_path)
    settings.ADRENAL_DICOM_SPOOL = tmp_path / "spool"
    path = spool.header_path(p.series.study.study_uid, p.series.series_uid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"DICM" + b"\xff" * 300)
    c = client_as("admin")
    for url in (f"/api/predictions/{p.pk}/dicom/", f"/api/predictions/{p.pk}/dicom.zip"):
        r = c.get(url)
        assert r.status_code == 422, (url, r.status_code)
        assert f"no DICOM result could be made for series {p.series.pk}" in r.json()["detail"]
    with pytest.raises(answers.CannotBuild):
        answers.make_results(p)


def test_a_deleted_verdict_takes_its_dicom_results_with_it(db, settings, tmp_path, client_as,
                                                           django_capture_on_commit_callbacks):
    """The SR and key images made of a verdict for the PACS (``dicom_results/<id>/``, the patient's name and ID
    in every file) stayed under MEDIA_ROOT after the verdict was deleted in the admin, or with its patient: only
    its evidence thumbnails went. Another verdict's results stay."""
    p = _prediction(settings, tmp_path)
    settings.ADRENAL_DICOM_SPOOL = tmp_path / "spool"
    _received_series(tmp_path, p.series.study.study_uid, p.series.series_uid)
    kept = Prediction.objects.create(series=p.series, run=p.run, verdict="normal", probability=0.1, fraction=0.0,
                                     operating_value=0.4, sides={"R": 0.1, "L": 0.1})
    made = {q.pk: [answers.result_path(r) for r in answers.make_results(q)] for q in (p, kept)}
    assert all(f.is_file() for files in made.values() for f in files)
    admin = client_as("admin")
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.post(f"/admin/inference/prediction/{p.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not answers.results_dir(p).exists() and not any(f.exists() for f in made[p.pk])
    assert all(f.is_file() for f in made[kept.pk])
    patient = p.series.study.patient
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.post(f"/admin/annotations/patient/{patient.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not answers.results_dir(kept).exists()


def test_results_made_for_a_verdict_deleted_meanwhile_are_not_left_behind(transactional_db, settings, tmp_path,
                                                                          monkeypatch):
    """A verdict deleted while its DICOM results were made: the SR was written before its rows, whose write then
    failed, and stayed under dicom_results/<id>/ (the patient's name and ID) after the deletion had removed the
    folder. It goes with the failed write."""
    p = _prediction(settings, tmp_path)
    settings.ADRENAL_DICOM_SPOOL = tmp_path / "spool"
    _received_series(tmp_path, p.series.study.study_uid, p.series.series_uid)
    real_write = answers.write_bytes

    def verdict_deleted_then_write(path, data):
        Prediction.objects.filter(pk=p.pk).delete()  # an admin deletes the verdict while its results are made
        real_write(path, data)

    monkeypatch.setattr(answers, "write_bytes", verdict_deleted_then_write)
    with pytest.raises(answers.CannotBuild):
        answers.make_results(p)
    assert not [f for f in (tmp_path / "media").rglob("dicom_results/**/*") if f.is_file()]


def test_a_deleted_scan_takes_the_header_the_node_kept_of_it(db, settings, tmp_path, client_as,
                                                              django_capture_on_commit_callbacks):
    """The header the node keeps of every series it imported (``ADRENAL_DICOM_SPOOL/headers/<study>/<series>.dcm``:
    the patient's name and ID) stayed after the scan, its patient or its dataset was deleted: a patient erased from
    the store was still on disk. It goes once no remaining scan has those UIDs (the same series in another dataset
    keeps it; a pass ``<uid>#acq2`` is the same series)."""
    from inference.services.dicom_node import spool
    from tests.plugins.store import write_ct_series

    settings.ADRENAL_DICOM_SPOOL = tmp_path / "spool"
    study_uid, series_uid = "1.2.826.0.99.7", "1.2.826.0.99.7.2"
    folder, _ = write_ct_series(tmp_path / "ct", n=3, study_uid=study_uid, series_uid=series_uid)
    header = spool.save_header(sorted(folder.iterdir())[0])
    first = make_series(make_dataset("Received"), "P1", study_uid=study_uid, series_uid=f"{series_uid}#acq1")
    again = make_series(make_dataset("Teaching"), "P9", study_uid=study_uid, series_uid=series_uid)
    other, _ = write_ct_series(tmp_path / "other", n=3, study_uid=study_uid, series_uid="1.2.826.0.99.7.3")
    other_header = spool.save_header(sorted(other.iterdir())[0])
    make_series(first.study.patient.dataset, "P1", study_uid=study_uid, series_uid="1.2.826.0.99.7.3")
    admin = client_as("admin")
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.post(f"/admin/annotations/series/{first.pk}/delete/", {"post": "yes"}).status_code == 302
    assert header.is_file()  # the same series in the other dataset still answers to the PACS
    with django_capture_on_commit_callbacks(execute=True):
        again.study.patient.dataset.delete()
    assert not header.exists() and other_header.is_file()  # the study's other series keeps its own
    with django_capture_on_commit_callbacks(execute=True):
        patient = first.study.patient
        assert admin.post(f"/admin/annotations/patient/{patient.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not other_header.exists() and not other_header.parent.exists()


def test_a_failed_delivery_is_logged_and_given_up_after_the_last_attempt(db, settings, tmp_path):
    p = _prediction(settings, tmp_path)
    settings.ADRENAL_DICOM_MAX_ATTEMPTS, settings.ADRENAL_DICOM_RETRY_SECONDS = 2, 30
    path = Path(settings.MEDIA_ROOT) / "dicom_results/x/sr.dcm"
    path.parent.mkdir(parents=True)
    result = DicomResult.objects.create(prediction=p, kind="sr", sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34",
                                        sop_instance_uid="1.2.3.4.5", series_uid="1.2.3.4", study_uid="1.2.3",
                                        file="dicom_results/x/sr.dcm")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SOPClassUID, ds.SOPInstanceUID = result.sop_class_uid, result.sop_instance_uid
    ds.save_as(path, enforce_file_format=True)
    dead = config.Peer("NOBODY", "127.0.0.1", free_port())
    [send] = sending.queue_sends([result], dead)
    assert sending.deliver([send]) == {"delivered": 0, "failed": 1}
    send.refresh_from_db()
    assert send.attempts == 1 and "could not be reached" in send.last_error and send.delivery == "pending"
    assert timedelta(seconds=29) < send.next_attempt_at - timezone.now() <= timedelta(seconds=30)
    assert not DicomSend.objects.due().exists()
    sending.deliver([send])
    send.refresh_from_db()
    assert send.delivery == "gave up" and send.next_attempt_at is None and len(send.log) == 2
    assert [e["ok"] for e in sending.sends_log(p)[0]["log"]] == [False, False]


def test_scheduler_requeues_due_sends_not_held_by_an_active_job(db, settings, tmp_path):
    p = _prediction(settings, tmp_path)
    result = DicomResult.objects.create(prediction=p, kind="sr", sop_class_uid="1.2", sop_instance_uid="1.2.3.9",
                                        series_uid="1.2.3", study_uid="1.2", file="x.dcm")
    holder = make_job("dicom_answer", Job.Status.RUNNING)
    send = DicomSend.objects.create(result=result, destination="PACS@h:104", next_attempt_at=timezone.now(),
                                    job=holder)
    started = []

    def start(prediction_id):
        started.append(prediction_id)
        return make_job("dicom_send", Job.Status.QUEUED)

    assert scheduler.requeue_due_sends(start) == []  # held by the running answer job
    Job.objects.filter(pk=holder.pk).update(status=Job.Status.SUCCEEDED)
    assert scheduler.requeue_due_sends(start) == [p.pk] and started == [p.pk]
    assert scheduler.requeue_due_sends(start) == []  # now held by the queued send job
    send.refresh_from_db()
    assert send.job.kind == "dicom_send"


def test_home_page_shows_the_node_to_admins_only(db, client_as, settings):
    settings.ADRENAL_DICOM_PEERS = "PACS@10.0.0.5:104"
    d = _delivery("1.2.826.0.77", 1)
    ReceivedInstance.objects.create(study=d, sop_instance_uid="1.2.3", sop_class_uid="1.2", series_uid="1.2.4",
                                    path="incoming/1/x.dcm")
    page = client_as("admin").get("/").content.decode()
    assert 'id="dicom-node"' in page and "PACS@10.0.0.5:104" in page and "1.2.826.0.77" in page
    assert "receiving" in page and "the sending peer" in page
    assert 'id="dicom-node"' not in client_as("clinician").get("/").content.decode()


def test_promote_from_the_command_line(db):
    ds = make_dataset("promote-ds")
    split = make_split(ds)
    run = make_run(ds, split, operating_value=0.5)
    other = make_run(ds, split, operating_value=0.5, promoted=True)
    call_command("promote", str(run.pk))
    run.refresh_from_db(), other.refresh_from_db()
    assert run.promoted and not other.promoted
    running = make_run(ds, split, status=Job.Status.RUNNING, operating_value=0.5)
    with pytest.raises(CommandError, match="only a finished run"):
        call_command("promote", str(running.pk))
    with pytest.raises(CommandError, match="evaluate it first"):
        call_command("promote", str(make_run(ds, split).pk))
    with pytest.raises(CommandError, match="no training run 999999"):
        call_command("promote", "999999")


def test_compose_and_make_run_start_the_listener():
    compose = (REPO / "docker" / "compose.yml").read_text()
    assert "dicom-listener:" in compose and '"manage.py", "dicom_listener"' in compose
    assert "ADRENAL_DICOM_PEERS" in compose and "ADRENAL_DICOM_BIND: 0.0.0.0" in compose
    assert '"manage.py", "dicom_listener"' in (REPO / "scripts" / "run_dev.py").read_text()
    readme = (REPO / "README.md").read_text()
    for setting in ("ADRENAL_DICOM_PORT", "ADRENAL_DICOM_AET", "ADRENAL_DICOM_PEERS", "ADRENAL_DICOM_STABLE_SECONDS",
                    "ADRENAL_DICOM_DATASET", "ADRENAL_DICOM_RESULTS_TO", "ADRENAL_PACS", "ADRENAL_DICOMWEB_URL"):
        assert setting in readme


def test_a_part_of_a_split_series_finds_its_header_and_its_own_instances(db, settings, tmp_path):
    """A series the import split (two phases in one SeriesInstanceUID: scans ``<uid>#acq1`` and ``<uid>#acq2``)
    is one series to the PACS: its header is kept under ``<uid>``. source_of looked it up under the part's key and
    answered 'not received or retrieved', so no part got results; and every part would have referenced all the
    series' instances. Each part now reads the series' header and references its own instances only."""
    from annotations.models import SourceInstance

    settings.ADRENAL_DICOM_SPOOL = tmp_path / "spool"
    study_uid, series_uid = "1.2.826.0.99.8", "1.2.826.0.99.8.2"
    sops = _received_series(tmp_path, study_uid, series_uid, n=4)
    ds = make_dataset("Received")
    parts = [make_series(ds, "P1", study_uid=study_uid, series_uid=f"{series_uid}#acq{k}") for k in (1, 2)]
    for part, mine in zip(parts, (sops[:2], sops[2:])):
        for sop in mine:
            SourceInstance.objects.create(dataset=ds, series=part, key=sop, path=f"{sop}.dcm")
    for part, mine in zip(parts, (sops[:2], sops[2:])):
        source = answers.source_of(part)
        assert str(source.header.SeriesInstanceUID) == series_uid
        assert [i.sop_instance_uid for i in source.images] == mine
    whole = make_series(make_dataset("Teaching"), "P9", study_uid=study_uid, series_uid=series_uid)
    assert [i.sop_instance_uid for i in answers.source_of(whole).images] == sops
