"""What the DICOM node's C-STORE handler makes of instances whose bookkeeping values are not numbers: a slice of
the real TotalSegmentator series with ImagePositionPatient 'nan' or text, or InstanceNumber 'abc', is stored and
acknowledged (the importer judges its geometry later, as for files imported from a folder); before, the handler
raised or the database refused the NaN, the instance was answered with a failure and the PACS kept retrying."""
from __future__ import annotations

import io
from types import SimpleNamespace

import pydicom
import pytest
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
