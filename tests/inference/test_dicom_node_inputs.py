"""What the DICOM node's C-STORE handler makes of instances whose bookkeeping values are not numbers: a slice of
the real TotalSegmentator series with ImagePositionPatient 'nan' or text, or InstanceNumber 'abc', is stored and
acknowledged (the importer judges its geometry later, as for files imported from a folder); before, the handler
raised or the database refused the NaN, the instance was answered with a failure and the PACS kept retrying."""
from __future__ import annotations

import io
from types import SimpleNamespace

import pydicom
import pytest
from django.utils import timezone
from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian, generate_uid

from inference.models import ReceivedInstance
from inference.services.dicom_node.scp import SUCCESS, StorageSCP, parse_store

POSITION, NUMBER = b"1.5\\2.5\\3.5 ", b"777 "


def _event(realct, patch: tuple[bytes, bytes] | None):
    ds = pydicom.dcmread(sorted(realct["example_ct_dicom"].iterdir())[0])
    ds.decompress()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.ImagePositionPatient, ds.InstanceNumber = ["1.5", "2.5", "3.5"], "777"
    del ds.file_meta
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    raw = buffer.getvalue()
    if patch:  # the bytes a sender puts on the wire, which pydicom would not write
        assert raw.count(patch[0]) == 1
        raw = raw.replace(*patch)
    received = pydicom.dcmread(io.BytesIO(raw), force=True)
    requestor = SimpleNamespace(ae_title="PACS", address="127.0.0.1")
    return SimpleNamespace(dataset=received, encoded_dataset=lambda include_meta=True: raw,
                           context=SimpleNamespace(abstract_syntax=CTImageStorage,
                                                   transfer_syntax=ImplicitVRLittleEndian),
                           assoc=SimpleNamespace(requestor=requestor))


@pytest.mark.parametrize("patch, position, number", [
    (None, [1.5, 2.5, 3.5], 777),
    ((POSITION, b"nan\\nan\\nan "), None, 777),
    ((POSITION, b"a.5\\b.5\\c.5 "), None, 777),
    ((NUMBER, b"abc "), [1.5, 2.5, 3.5], None),
])
def test_an_instance_whose_position_or_number_is_not_a_number_is_stored(db, realct, patch, position, number):
    event = _event(realct, patch)
    fields = parse_store(event)
    assert isinstance(fields, dict), fields
    assert fields["position"] == position and fields["instance_number"] == number
    scp = StorageSCP(aet="ADRENAL", port=0, peers=[])
    assert scp._on_store(event) == SUCCESS
    row = ReceivedInstance.objects.get(sop_instance_uid=str(event.dataset.SOPInstanceUID))
    assert row.position == position and row.instance_number == number and row.size > 500_000


def test_an_instance_with_a_uid_over_64_characters_is_refused_for_good_with_the_reason(db, realct):
    """A SOP Instance UID of 70 characters (no DICOM UID; some broken exporters write them) was recorded in the
    node's 64-character columns: on PostgreSQL the insert failed, the node answered 0xA700 (out of resources), a
    status a PACS retries for ever, and no result could have been filed back. It is now refused with a failure
    status that says which UID is too long, and nothing is stored."""
    event = _event(realct, None)
    event.dataset.SOPInstanceUID = "1.2.826.0.1." + "1234567890" * 6 + ".1"
    scp = StorageSCP(aet="ADRENAL", port=0, peers=[])
    status = scp._on_store(event)
    assert status.Status == 0xC000 and status.ErrorComment == "SOPInstanceUID over 64 characters"
    assert not ReceivedInstance.objects.exists()


def test_a_received_instance_goes_to_a_file_and_one_over_the_limit_is_refused_naming_its_size(
        transactional_db, realct, settings, tmp_path):
    """Over a real association: pynetdicom kept every received data set whole in memory, so one peer's huge
    instance could make the listener allocate gigabytes. It now arrives in a temporary file; an instance over
    ``ADRENAL_DICOM_MAX_INSTANCE_BYTES`` is refused for good (0xC000) naming its size, and one within is copied
    into the spool byte for byte."""
    from pynetdicom import AE

    from inference.services.dicom_node.config import Peer
    from tests.plugins.pacs import free_port

    settings.ADRENAL_DICOM_SPOOL = tmp_path / "spool"
    source = sorted(realct["example_ct_dicom"].iterdir())[0]
    ds = pydicom.dcmread(source)
    ds.decompress()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    scp = StorageSCP(aet="ADRENAL", port=free_port(), peers=[Peer("SENDER", "127.0.0.1", 104)])
    scp.start()
    try:
        sender = AE(ae_title="SENDER")
        sender.add_requested_context(CTImageStorage, ImplicitVRLittleEndian)
        for limit, expected in ((100_000, 0xC000), (None, SUCCESS)):
            settings.ADRENAL_DICOM_MAX_INSTANCE_BYTES = limit
            assoc = sender.associate("127.0.0.1", scp.port, ae_title="ADRENAL")
            assert assoc.is_established
            status = assoc.send_c_store(ds)
            assoc.release()
            assert status.Status == expected, status
            if limit:
                assert "over the node's 0.1 MB" in status.ErrorComment and "instance of 0.5 MB" in status.ErrorComment
                assert not ReceivedInstance.objects.exists()
    finally:
        scp.stop()
    row = ReceivedInstance.objects.get(sop_instance_uid=str(ds.SOPInstanceUID))
    stored = pydicom.dcmread(settings.ADRENAL_DICOM_SPOOL / row.path)
    assert row.size > 500_000 and stored.PixelData == ds.PixelData



def test_the_c_move_receiver_takes_instances_from_the_moving_pacs_only(transactional_db, realct, settings, tmp_path):
    """While a C-MOVE ran, its receiving AE accepted any caller, so any host could push instances into the
    delivery being retrieved. Only the PACS the move is from (its AE title, from its host) may associate now."""
    from pynetdicom import AE

    from inference.models import ReceivedStudy
    from inference.services.dicom_node.config import Peer
    from inference.services.dicom_node.pull import move_receiver
    from tests.plugins.pacs import free_port

    settings.ADRENAL_DICOM_SPOOL = tmp_path / "spool"
    delivery = ReceivedStudy.objects.create(study_uid="1.2.3", calling_aet="ORTHANC", source="retrieve",
                                            first_received_at=timezone.now(), last_received_at=timezone.now())
    ds = pydicom.dcmread(sorted(realct["example_ct_dicom"].iterdir())[0])
    ds.decompress()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.2.3", generate_uid(), generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    port = free_port()
    server = move_receiver(Peer("ORTHANC", "127.0.0.1", 4242), delivery, "ADRENALMOVE", port)
    try:
        for caller, accepted in (("STRANGER", False), ("ORTHANC", True)):
            sender = AE(ae_title=caller)
            sender.add_requested_context(CTImageStorage, ImplicitVRLittleEndian)
            assoc = sender.associate("127.0.0.1", port, ae_title="ADRENALMOVE")
            assert assoc.is_established == accepted, caller
            if accepted:
                assert assoc.send_c_store(ds).Status == SUCCESS
                assoc.release()
    finally:
        server.shutdown()
    assert [r.sop_instance_uid for r in ReceivedInstance.objects.filter(study=delivery)] == [str(ds.SOPInstanceUID)]
