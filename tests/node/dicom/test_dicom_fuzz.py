"""Fuzzing the DICOM parsers (hypothesis, bounded): mutated and truncated bundled files,
and random bytes, through the parsing every C-STORE takes, de-identification, STOW-RS over
HTTP and C-STORE over TCP. The property: a clean refusal (an InvalidInstance, a 4xx, a
failure status), never another exception, a 5xx or a dead listener."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.dicom.deidentify import deidentify
from node.dicom.dicomweb import multipart_related
from node.dicom.ingest import StoreStatus
from node.dicom.instance import InvalidInstance, is_uid, parse_instance
from node.exceptions import Conflict
from tests.node.conftest import RunningNode
from tests.node.dicom.conftest import TEST_FILES_DIR, Modality
from tests.node.security.helpers import FUZZ

SEEDS = [
    (TEST_FILES_DIR / name).read_bytes()
    for name in (
        "CT_small.dcm",  # explicit VR little endian
        "MR_small_implicit.dcm",  # implicit VR
        "MR_small_bigendian.dcm",  # explicit VR big endian
        "rtplan.dcm",  # nested sequences
        "JPEG2000.dcm",  # encapsulated pixel data
        "SC_rgb_rle_2frame.dcm",
        "image_dfl.dcm",  # deflated
        "liver_1frame.dcm",  # many sequence items
    )
]
# Undefined length, zero, an item tag: the words that steer a parser.
WORDS = [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xfe\xff\x00\xe0"]
KNOWN_STATUSES = {int(s) for s in StoreStatus}
MANY = settings(FUZZ, max_examples=200)
SOME = settings(FUZZ, max_examples=100)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A bundled file with bytes overwritten (often length fields: 4 bytes at once),
    a slice cut out or repeated, and maybe truncated."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data[pos : pos + 4] = draw(st.sampled_from(WORDS))
        else:
            data[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        a = draw(st.integers(0, len(data)))
        b = draw(st.integers(a, min(len(data), a + 512)))
        data[a:a] = data[a:b] if draw(st.booleans()) else b""
        if not draw(st.booleans()):
            del data[a:b]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


dicom_bytes = st.one_of(
    mutated(),
    st.binary(max_size=600),
    st.binary(max_size=400).map(lambda b: b"\x00" * 128 + b"DICM" + b),
)


@MANY
@given(data=dicom_bytes)
def test_parsing_refuses_cleanly(data: bytes) -> None:
    try:
        instance = parse_instance(data)
    except InvalidInstance as err:
        assert str(err)
        return
    assert instance.sop_instance_uid and instance.patient_id
    assert instance.document().identifier == f"urn:dicom:uid|{instance.sop_instance_uid}"


@SOME
@given(data=mutated())
def test_deidentification_refuses_cleanly(data: bytes) -> None:
    try:
        out = deidentify(data, b"salt")
    except (InvalidInstance, Conflict):
        return
    assert pydicom.dcmread(io.BytesIO(out)).PatientIdentityRemoved == "YES"


@pytest.fixture(scope="module")
def hospital_token(dicom_node: RunningNode) -> str:
    with dicom_node.client(dicom_node.admin_token) as admin:
        return admin.create_token("fuzz-pacs", "hospital")


@SOME
@given(parts=st.lists(dicom_bytes, min_size=1, max_size=3))
def test_stow_never_answers_5xx(
    dicom_node: RunningNode, hospital_token: str, parts: list[bytes]
) -> None:
    body, content_type = multipart_related(parts)
    r = httpx.post(
        dicom_node.url + "/dicomweb/studies",
        content=body,
        headers={"Authorization": f"Bearer {hospital_token}", "Content-Type": content_type},
        timeout=60,
    )
    # 200/202: stored (a mutation can leave an instance intact); 409: none storable.
    assert r.status_code in (200, 202, 409), (r.status_code, r.text[:300])


@SOME
@given(body=st.one_of(st.binary(max_size=300), mutated()), boundary=st.sampled_from(["b", "x"]))
def test_stow_with_a_fuzzed_body_is_refused_cleanly(
    dicom_node: RunningNode, hospital_token: str, body: bytes, boundary: str
) -> None:
    r = httpx.post(
        dicom_node.url + "/dicomweb/studies",
        content=b"--b\r\n\r\n" + body,
        headers={
            "Authorization": f"Bearer {hospital_token}",
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        },
        timeout=60,
    )
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.json()["detail"]


@settings(FUZZ, max_examples=30)
@given(data=mutated())
def test_c_store_of_a_fuzzed_file_gets_a_status_and_the_scp_lives_on(
    modality: Modality, tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    """The SCU sends the file's data set as it is (from a path, without decoding it); its
    file meta is left intact so that the SCU can name the transfer syntax."""
    path: Path = tmp_path_factory.mktemp("fuzz") / "instance.dcm"
    try:
        meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta
        path.write_bytes(data)
        sop_class, syntax = meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID
    except Exception:
        return  # the SCU could not send it: nothing reaches the node
    if not (is_uid(str(sop_class)) and is_uid(str(syntax))):
        return  # the SCU cannot even propose the context
    ae = modality._ae([(sop_class, syntax)])
    assoc = ae.associate(modality.host, modality.port, ae_title=modality.called)
    if assoc.is_established:
        try:
            status = assoc.send_c_store(path)
            if "Status" in status:
                assert int(status.Status) in KNOWN_STATUSES, hex(int(status.Status))
        except Exception:
            pass  # the SCU refused to send what it read (its own parser): not ours
        finally:
            assoc.release()
    assert modality.echo() == 0  # the SCP answers the next association
