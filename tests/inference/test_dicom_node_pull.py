"""Pulling studies from a real PACS (Orthanc) into a dataset: C-FIND by patient, date, modality and
description; C-GET and C-MOVE of a study or a series; QIDO-RS and WADO-RS through Orthanc's DICOMweb plugin;
each retrieve imported by the store's importer (boxes proposed), without verdicts."""
from __future__ import annotations

import json
from io import StringIO

import pydicom
import pytest
import requests
from django.core.management import CommandError, call_command

from annotations.models import Dataset, Series
from inference.models import ReceivedStudy
from tests.plugins.pacs import Orthanc, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, realct):
    """Orthanc holding the real-CT study, knowing the node's AE (C-FIND/C-GET) and a C-MOVE destination."""
    from tests.plugins.pacs import write_real_ct_study

    tmp = tmp_path_factory.mktemp("pull")
    move_port = free_port()
    orthanc = Orthanc(tmp / "orthanc", modalities={"adrenal": ["ADRENAL", "127.0.0.1", free_port()],
                                                   "adrenal-move": ["ADRENALMOVE", "127.0.0.1", move_port]})
    orthanc.start()
    study = write_real_ct_study(tmp / "study", realct, patient_id="PULL-0001", patient_name="Pull^Test")
    orthanc.upload(study["abdomen"][1] + study["slab"][1])
    orthanc.study_info, orthanc.move_port = study, move_port
    yield orthanc
    orthanc.stop()


def _run(*args) -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_query_by_patient_date_modality_and_description(pacs):
    peer = f"ORTHANC@127.0.0.1:{pacs.dicom_port}"
    uid = pacs.study_info["study_uid"]
    found = _run("pacs_query", "--pacs", peer, "--patient", "PULL-0001", "--date", "20240101-20240131",
                 "--modality", "CT")
    assert [m["StudyInstanceUID"] for m in found["matches"]] == [uid]
    assert found["matches"][0]["PatientName"] == "Pull^Test" and found["matches"][0]["NumberOfStudyRelatedInstances"] == "132"
    assert _run("pacs_query", "--pacs", peer, "--patient", "PULL-0001", "--date", "20230101")["matches"] == []
    series = _run("pacs_query", "--pacs", peer, "--study", uid, "--series", "--description", "ABDOMEN*")
    assert [m["SeriesInstanceUID"] for m in series["matches"]] == [pacs.study_info["abdomen"][0]]
    assert series["matches"][0]["NumberOfSeriesRelatedInstances"] == "112"
    # the same through DICOMweb (QIDO-RS)
    web = _run("pacs_query", "--dicomweb", f"{pacs.url}/dicom-web", "--patient", "PULL-0001", "--modality", "CT")
    assert [m["StudyInstanceUID"] for m in web["matches"]] == [uid]
    with pytest.raises(CommandError, match="ORTHANC@127.0.0.1:1 could not be reached"):
        call_command("pacs_query", "--pacs", "ORTHANC@127.0.0.1:1", "--patient", "X")
    with pytest.raises(CommandError, match="not AET@host:port"):
        call_command("pacs_query", "--pacs", "nonsense", "--patient", "X")


def test_retrieve_with_c_get_c_move_and_wado_into_datasets(pacs, transactional_db, settings, tmp_path):
    settings.ADRENAL_DICOM_SPOOL = tmp_path / "spool"
    settings.ADRENAL_AUTO_PROPOSE = False
    peer = f"ORTHANC@127.0.0.1:{pacs.dicom_port}"
    uid = pacs.study_info["study_uid"]
    abdomen_uid, slab_uid = pacs.study_info["abdomen"][0], pacs.study_info["slab"][0]

    doc = _run("pacs_retrieve", uid, "--dataset", "Pulled by C-GET", "--pacs", peer, "--sync")
    assert doc["status"] == "succeeded" and doc["instances"] == 132 and doc["retrieve"]["completed"] == 132
    got = Series.objects.filter(study__patient__dataset__name="Pulled by C-GET")
    assert {s.series_uid for s in got} == {abdomen_uid, slab_uid}
    abdomen = got.get(series_uid=abdomen_uid)
    assert abdomen.volume.shape == [112, 101, 122] and abdomen.boxes.count() == 2  # imported, boxes proposed
    assert got.get(series_uid=slab_uid).transfer_syntax == "1.2.840.10008.1.2.4.90"  # JPEG 2000 kept
    delivery = ReceivedStudy.objects.get(pk=doc["delivery"])
    assert delivery.source == "retrieve" and not delivery.judge and delivery.imported_at
    assert not (settings.ADRENAL_DICOM_SPOOL / delivery.folder).exists()

    doc = _run("pacs_retrieve", uid, "--dataset", "Pulled by C-MOVE", "--pacs", peer, "--series", abdomen_uid,
               "--method", "move", "--move-aet", "ADRENALMOVE", "--move-port", str(pacs.move_port), "--sync")
    assert doc["instances"] == 112 and doc["retrieve"]["completed"] == 112
    assert [s.series_uid for s in Series.objects.filter(study__patient__dataset__name="Pulled by C-MOVE")] == \
        [abdomen_uid]

    doc = _run("pacs_retrieve", uid, "--dataset", "Pulled by WADO", "--dicomweb", f"{pacs.url}/dicom-web",
               "--series", slab_uid, "--sync")
    assert doc["instances"] == 20 and doc["status"] == "succeeded"
    assert Dataset.objects.get(name="Pulled by WADO").patients.count() == 1

    # retrieving the same study again adds nothing to the dataset
    doc = _run("pacs_retrieve", uid, "--dataset", "Pulled by C-GET", "--pacs", peer, "--sync")
    assert "0 imported" in doc["import"] and got.count() == 2


@pytest.mark.parametrize("method", ["get", "move"])
def test_a_retrieve_that_fails_leaves_no_delivery_receiving_and_no_empty_dataset(db, method):
    """A pacs_retrieve from a PACS that cannot be reached left its delivery open ("Receiving 1" on the admins'
    home page, a "receiving" row, for ever) and the empty dataset it had made. Both go with the failure; a
    dataset that existed before stays."""
    from inference.services.dicom_node.status import node_summary

    args = ["--pacs", f"PACS@127.0.0.1:{free_port()}", "--method", method]
    if method == "move":
        args += ["--move-aet", "ADRENALMOVE", "--move-port", str(free_port())]
    with pytest.raises(CommandError, match="could not be reached"):
        call_command("pacs_retrieve", "1.2.3.4", "--dataset", "Made now", *args)
    assert not Dataset.objects.filter(name="Made now").exists()
    Dataset.objects.create(name="There before")
    with pytest.raises(CommandError, match="could not be reached"):
        call_command("pacs_retrieve", "1.2.3.4", "--dataset", "There before", *args)
    assert Dataset.objects.filter(name="There before").exists()
    assert not ReceivedStudy.objects.exists()
    assert node_summary()["receiving"] == 0


def _small_pacs(tmp_path, realct, **study_kw) -> Orthanc:
    """An Orthanc of its own (a test may stop it) holding 12 slices of the real CT."""
    from tests.plugins.pacs import write_real_ct_study

    orthanc = Orthanc(tmp_path / "orthanc", modalities={"adrenal": ["ADRENAL", "127.0.0.1", free_port()]}).start()
    study = write_real_ct_study(tmp_path / "study", realct, **study_kw)
    orthanc.study_info, orthanc.files = study, study["abdomen"][1][40:52]
    return orthanc


def test_a_pacs_going_down_mid_retrieve_is_a_clear_failure_leaving_nothing_behind(transactional_db, settings,
                                                                                  tmp_path, realct, monkeypatch):
    """The PACS stopped half-way through a C-GET: pynetdicom answers a lost connection with an empty status,
    which the node read as a response (AttributeError: no 'Status', a traceback from pacs_retrieve), and the
    instances that had arrived stayed in a closed delivery without a job ("queued" on the home page for ever,
    never imported). Now the command names the lost connection and the discarded instances, and nothing of
    the partial retrieve stays (delivery, rows, spool files)."""
    from inference.services.dicom_node import scp
    from inference.services.dicom_node.status import node_summary

    settings.ADRENAL_DICOM_SPOOL = tmp_path / "spool"
    orthanc = _small_pacs(tmp_path, realct, patient_id="GONE-0001")
    try:
        orthanc.upload(orthanc.files)
        save, arrived = scp.save_instance, []

        def save_then_stop_the_pacs(delivery, **fields):  # the real save; the real PACS stops after the third
            arrived.append(fields["sop_uid"])
            row = save(delivery, **fields)
            if len(arrived) == 3:
                orthanc.stop()
            return row

        monkeypatch.setattr(scp, "save_instance", save_then_stop_the_pacs)
        with pytest.raises(CommandError, match=r"connection lost.*3 instance\(s\) that had arrived were discarded"):
            call_command("pacs_retrieve", orthanc.study_info["study_uid"], "--dataset", "Half",
                         "--pacs", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", "--sync")
    finally:
        orthanc.stop()
    assert len(arrived) == 3 and not ReceivedStudy.objects.exists()
    assert not list((tmp_path / "spool").rglob("*.dcm")) and not Dataset.objects.filter(name="Half").exists()
    assert node_summary()["receiving"] == 0


def test_a_dicomweb_retrieve_keeps_instances_with_odd_numbers(transactional_db, settings, tmp_path, realct):
    """WADO-RS instances were recorded with ``int(InstanceNumber)`` and ``float`` positions: one instance with an
    InstanceNumber of '1.5' (or a position 'nan') made the whole retrieve fail, where the listener takes it and
    leaves the judging to the importer. Now both read them alike (left out when they are no numbers)."""
    settings.ADRENAL_DICOM_SPOOL = tmp_path / "spool"
    settings.ADRENAL_AUTO_PROPOSE = False
    orthanc = _small_pacs(tmp_path, realct, patient_id="ODD-0001")
    try:
        odd = pydicom.dcmread(orthanc.files[0])
        odd.InstanceNumber = "1.5"
        odd["ImagePositionPatient"].value = ["nan", "0", "0"]
        odd.save_as(orthanc.files[0])
        orthanc.upload(orthanc.files)
        doc = _run("pacs_retrieve", orthanc.study_info["study_uid"], "--dataset", "Odd", "--dicomweb",
                   f"{orthanc.url}/dicom-web", "--sync")
    finally:
        orthanc.stop()
    assert doc["instances"] == 12 and doc["status"] == "succeeded", doc
    row = ReceivedStudy.objects.get(pk=doc["delivery"]).instances.get(sop_instance_uid=odd.SOPInstanceUID)
    assert row.instance_number is None and row.position is None


def test_query_keys_the_pacs_would_misread_are_refused_and_names_match_in_utf8(pacs, db, tmp_path):
    """'--date 2024-01-17' (ISO, as people type it) went to the PACS as it was and came back with no match, as
    did a backslash (two values) or an over-long ID; a UID with a wildcard would retrieve what it matches.
    Each is refused naming the problem. A name in Japanese went out without a character set, each character sent
    as '?', a wildcard for any character, so 'Yamada Tarou' matched 'Yamada Hanako' too; the query now says
    UTF-8."""
    peer = f"ORTHANC@127.0.0.1:{pacs.dicom_port}"
    for opt, value, why in (("--date", "2024-01-17", "not YYYYMMDD"), ("--date", "20241301", "not YYYYMMDD"),
                            ("--name", "DOE\\JOHN", "backslash"), ("--patient", "X" * 65, "longer than the 64"),
                            ("--study", "1.2.*", "not a DICOM UID")):
        with pytest.raises(CommandError, match=why):
            call_command("pacs_query", "--pacs", peer, opt, value)
    with pytest.raises(CommandError, match="not a DICOM UID"):
        call_command("pacs_retrieve", "*", "--dataset", "Everything", "--pacs", peer)
    assert not Dataset.objects.filter(name="Everything").exists()
    assert _run("pacs_query", "--pacs", peer, "--date", "20240117-")["matches"]  # an open range is fine
    uids = {}
    requests.put(f"{pacs.url}/tools/default-encoding", data="Utf8", timeout=10).raise_for_status()  # its answers
    try:
        for name in ("山田^太郎", "山田^花子", "Müller^Zoë"):
            ds = pydicom.dcmread(pacs.study_info["abdomen"][1][0])
            ds.SpecificCharacterSet, ds.PatientName, ds.PatientID = "ISO_IR 192", name, "CHARSET-1"
            ds.StudyInstanceUID = uids[name] = pydicom.uid.generate_uid()
            ds.SeriesInstanceUID, ds.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(tmp_path / "one.dcm")
            pacs.upload([tmp_path / "one.dcm"])
        for name in uids:
            found = _run("pacs_query", "--pacs", peer, "--name", name)["matches"]
            assert [(m["StudyInstanceUID"], m["PatientName"]) for m in found] == [(uids[name], name)]
    finally:
        requests.put(f"{pacs.url}/tools/default-encoding", data="Latin1", timeout=10)


def test_a_study_with_objects_other_than_ct_is_retrieved_by_its_ct_series(transactional_db, settings, tmp_path, realct,
                                                                         monkeypatch):
    """A study holding an object other than CT (here a Secondary Capture beside the CT slab, as a dose report or a
    screen capture is in most CT studies): the retrieve asks for the CT series only, found by a series-level C-FIND,
    and says how many others it left. Before, a study-level C-GET asking for CT classes made Orthanc stop at the
    capture with 0xC000, having sent nothing: the study could not be pulled at all. Nothing received stays in the
    temporary folder (pynetdicom's C-GET left each instance's temporary file there: the patient's CT, 614 files
    after one test run)."""
    import tempfile
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    from tests.plugins.pacs import write_real_ct_study

    settings.ADRENAL_DICOM_SPOOL = tmp_path / "spool"
    settings.ADRENAL_AUTO_PROPOSE = False
    (tmp_path / "temporary").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temporary"))
    move_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", modalities={"adrenal": ["ADRENAL", "127.0.0.1", free_port()],
                                                        "adrenal-move": ["ADRENALMOVE", "127.0.0.1", move_port]})
    orthanc.start()
    try:
        study = write_real_ct_study(tmp_path / "study", realct, patient_id="PART-0001")
        slab_files = study["slab"][1]
        sc = pydicom.dcmread(slab_files[0])
        sc.SOPClassUID = sc.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        sc.SOPInstanceUID = sc.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        sc.SeriesInstanceUID, sc.Modality = generate_uid(), "OT"
        sc.save_as(tmp_path / "sc.dcm")
        orthanc.upload(slab_files + [tmp_path / "sc.dcm"])
        out = StringIO()
        call_command("pacs_retrieve", study["study_uid"], "--dataset", "In part", "--pacs",
                     f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", "--sync", stdout=out)
        moved = _run("pacs_retrieve", study["study_uid"], "--dataset", "In part by C-MOVE", "--pacs",
                     f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", "--method", "move", "--move-aet", "ADRENALMOVE",
                     "--move-port", str(move_port), "--sync")
    finally:
        orthanc.stop()
    text = out.getvalue()
    assert text.startswith("20 instances retrieved"), text
    assert "1 series of the study not CT (dose reports, screen captures ...): not asked for" in text
    assert "sub-operation" not in text
    assert [s.series_uid for s in Series.objects.filter(study__patient__dataset__name="In part")] == \
        [study["slab"][0]]
    assert moved["instances"] == 20 and moved["retrieve"]["series_not_ct"] == 1 and moved["status"] == "succeeded"
    assert not list((tmp_path / "temporary").glob("*.dcm"))
