"""HL7 v2 over a real TCP MLLP connection against an in-process node: registration, results
and documents stored and read back through the patient's wallet, re-sends, unknown
patients, facilities, malformed and oversized messages, broken connections."""

from __future__ import annotations

import calendar
import secrets
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import hl7
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hl7.client import MLLPClient

from node.hl7.mapping import CONTENT_TYPE
from node.hl7.mllp import frame
from node.patients import WALLET_SYSTEM
from storage.exceptions import BackendUnavailable
from storage.models import RecordQuery, RecordRow
from tests.node.conftest import RunningNode
from tests.node.hl7.conftest import hl7_address
from tests.node.hl7.messages import (
    FACILITY,
    MllpConnection,
    ack_code,
    adt,
    connect,
    err,
    mdm,
    message,
    mrn,
    msh,
    oru,
    pid,
    wallet,
)


def _id() -> str:
    return secrets.token_hex(6).upper()


def _registered(conn: MllpConnection) -> tuple[LocalAccount, str]:
    """A new patient registered with ADT^A04 under a new MRN."""
    patient = Account.create()
    number = _id()
    ack = conn.send(adt("A04", _id(), mrn(number), wallet(patient.address)))
    assert ack_code(ack) == "AA", str(ack)
    return patient, number


def _record(rn: RunningNode, ack_text: str) -> RecordRow:
    assert "record 0x" in ack_text, ack_text
    rid = ack_text.split("record 0x", 1)[1][:64]
    return rn.node.index.get_record(bytes.fromhex(rid))


@pytest.fixture
def conn(hl7_node: RunningNode) -> Iterator[MllpConnection]:
    with connect(hl7_address(hl7_node)) as c:
        yield c


def test_register_then_results_and_documents_read_back_by_the_patient(
    hl7_node: RunningNode, conn: MllpConnection
) -> None:
    patient, number = _registered(conn)
    assert hl7_node.node.patients.resolve(f"urn:emr-node:hl7:{FACILITY}", number) == (
        patient.address
    )

    control = _id()
    result = oru(control, mrn(number))
    ack = conn.send(result)
    assert ack_code(ack) == "AA", str(ack)
    # The ACK's MSH swaps sender and receiver and acknowledges MSH-10.
    head = ack.segment("MSH")
    assert [str(head(n)) for n in (3, 4, 5, 6)] == ["EMR", "NODE", "LABSYS", FACILITY]
    assert str(head(9)) == "ACK^R01^ACK" and str(head(12)) == "2.5.1"
    assert str(ack.segment("MSA")(2)) == control
    row = _record(hl7_node, str(ack.segment("MSA")(3)))
    assert (row.patient, row.category, row.content_type) == (patient.address, "lab", CONTENT_TYPE)
    meta = row.document
    assert meta is not None
    assert (meta.source, meta.type_system, meta.type_code, meta.type_display) == (
        "hl7v2",
        "http://loinc.org",
        "2345-7",
        "Glucose",
    )
    # OBR-7 20260101103000+0100 is 09:30 UTC.
    assert meta.clinical_time == calendar.timegm((2026, 1, 1, 9, 30, 0, 0, 0, 0))
    assert meta.identifier == f"urn:emr-node:hl7:{FACILITY}|{control}"
    assert meta.attributes["hl7.control_id"] == control
    assert meta.attributes["hl7.message_type"] == "ORU^R01"
    assert meta.attributes["hl7.filler_order"] == "FL456"

    doc = conn.send(mdm(_id(), mrn(number)))
    assert ack_code(doc) == "AA", str(doc)
    note = _record(hl7_node, str(doc.segment("MSA")(3)))
    assert note.category == "note" and note.document is not None
    assert (note.document.type_system, note.document.type_code, note.document.title) == (
        "http://terminology.hl7.org/CodeSystem/v2-0270",
        "DS",
        "Discharge summary",
    )
    assert note.document.clinical_time == calendar.timegm((2025, 12, 31, 18, 0, 0, 0, 0, 0))
    assert note.document.attributes["hl7.document_number"] == "DOC-77"

    # The patient reads both through the read flow, with a wallet session.
    with hl7_node.client() as public:
        session = public.login(patient)
        read = public.read("0x" + row.record_id.hex(), session)
        assert read.content == result
        assert read.headers["content-type"].startswith(CONTENT_TYPE)
        assert read.headers["x-access-basis"] == "patient"
        assert public.read("0x" + note.record_id.hex(), session).content.startswith(b"MSH|")


def test_a_wallet_in_pid3_maps_directly(hl7_node: RunningNode, conn: MllpConnection) -> None:
    patient = Account.create()
    ack = conn.send(oru(_id(), mrn("NEVER-REGISTERED"), wallet(patient.address.lower())))
    assert ack_code(ack) == "AA", str(ack)
    assert _record(hl7_node, str(ack.segment("MSA")(3))).patient == patient.address
    # Taking a result links nothing: only ADT vouches for identifiers.
    assert hl7_node.node.patients.identifiers(patient.address) == [(WALLET_SYSTEM, patient.address)]


def test_a_resent_message_is_stored_once(hl7_node: RunningNode, conn: MllpConnection) -> None:
    _patient, number = _registered(conn)
    control = _id()
    first = conn.send(oru(control, mrn(number)))
    again = conn.send(oru(control, mrn(number)))
    assert ack_code(first) == ack_code(again) == "AA"
    stored = _record(hl7_node, str(first.segment("MSA")(3)))
    assert _record(hl7_node, str(again.segment("MSA")(3))).record_id == stored.record_id
    assert err(again)[:2] == ("205", "I")
    query = RecordQuery(identifier=f"urn:emr-node:hl7:{FACILITY}|{control}")
    assert hl7_node.node.index.count_records(query) == 1
    # The same control id from another facility is another message.
    other = conn.send(oru(control, mrn(number, FACILITY), facility="LAB2"))
    assert ack_code(other) == "AA" and "\rERR|" not in str(other)


def test_an_unknown_patient_is_an_application_error(conn: MllpConnection) -> None:
    ack = conn.send(oru(_id(), mrn("NOBODY-" + _id())))
    assert ack_code(ack) == "AE"
    code, severity, text = err(ack)
    assert (code, severity) == ("204", "E") and "unknown patient" in text


def test_identifiers_of_two_patients_are_an_application_error(conn: MllpConnection) -> None:
    _a, first = _registered(conn)
    _b, second = _registered(conn)
    ack = conn.send(oru(_id(), mrn(first), mrn(second)))
    assert ack_code(ack) == "AE" and err(ack)[0] == "204"


def test_a_facility_not_allowed_is_rejected(hl7_node: RunningNode, conn: MllpConnection) -> None:
    patient = Account.create()
    ack = conn.send(oru(_id(), wallet(patient.address), facility="EVILCORP"))
    assert ack_code(ack) == "AR"
    assert "not allowed" in err(ack)[2]
    assert hl7_node.node.index.count_records(RecordQuery(patient=patient.address)) == 0


def test_identifiers_move_only_by_an_update_that_says_so(
    hl7_node: RunningNode, conn: MllpConnection
) -> None:
    alice, number = _registered(conn)
    bob = Account.create()
    system = f"urn:emr-node:hl7:{FACILITY}"
    taken = conn.send(adt("A04", _id(), mrn(number), wallet(bob.address)))
    assert ack_code(taken) == "AE" and err(taken)[0] == "205"
    update = conn.send(adt("A08", _id(), mrn(number), wallet(bob.address)))
    assert ack_code(update) == "AE"
    assert hl7_node.node.patients.resolve(system, number) == alice.address
    moved = conn.send(adt("A08", _id(), mrn(number), wallet(bob.address), reason="MOVE"))
    assert ack_code(moved) == "AA", str(moved)
    assert err(moved)[1] == "I"
    assert hl7_node.node.patients.resolve(system, number) == bob.address
    # Identifiers with an ISO OID assigning authority take the urn:oid system.
    oid = conn.send(
        adt("A08", _id(), "123-45^^^SSA&2.16.840.1.113883.4.1&ISO^SS", wallet(bob.address))
    )
    assert ack_code(oid) == "AA"
    assert hl7_node.node.patients.resolve("urn:oid:2.16.840.1.113883.4.1", "123-45") == bob.address
    # A registration without a wallet is refused.
    bare = conn.send(adt("A04", _id(), mrn(_id())))
    assert ack_code(bare) == "AR" and err(bare)[0] == "101"


_MALFORMED = {
    "no MSH": (b"PID|1||12345^^^GENHOSP^MR\rOBR|1\r", "AR", "100"),
    "LF segment separator": (
        oru("LF1", mrn("1")).replace(b"\r", b"\n"),
        "AR",
        "100",
    ),
    "wrong version": (oru("V1", mrn("1"), version="3.0"), "AR", "203"),
    "version 2.1": (oru("V2", mrn("1"), version="2.1"), "AR", "203"),
    "unsupported type": (message(msh("ORM^O01", "T1"), pid(mrn("1"))), "AR", "200"),
    "unsupported event": (message(msh("ADT^A03", "T2"), pid(mrn("1"))), "AR", "201"),
    "training message": (oru("P1", mrn("1"), processing="T"), "AR", "202"),
    "truncated": (oru("TR1", mrn("1"))[:60], "AR", "101"),
    "header only": (b"MSH|^~\\&", "AR", "101"),
    "bad encoding characters": (b"MSH|^^\\&|A|GENHOSP|B|C|2026||ORU^R01|X|P|2.5\r", "AR", "102"),
    "no control id": (message(msh("ORU^R01", ""), pid(mrn("1"))), "AR", "101"),
    "ORU without OBR": (
        message(msh("ORU^R01", "NO-OBR"), pid(wallet("0x" + "ab" * 20))),
        "AR",
        "100",
    ),
    "wallet that is none": (
        message(msh("ORU^R01", "BAD-W"), pid(wallet("0x1234")), "OBR|1"),
        "AR",
        "102",
    ),
    "two PIDs": (
        message(msh("ORU^R01", "PID2"), pid(mrn("1")), pid(mrn("2")), "OBR|1"),
        "AR",
        "100",
    ),
    "raw control characters": (
        oru("CTL", mrn("1")).replace(b"Glucose", b"Glu\x00cose"),
        "AR",
        "102",
    ),
    "not UTF-8": (oru("UTF", mrn("1")).replace(b"Doe", b"D\xff\xfe"), "AR", "102"),
    "binary junk": (bytes(range(256)) * 4, "AR", "102"),
    "empty frame": (b"", "AR", "100"),
    "bad segment id": (oru("SEG", mrn("1")) + b"obx|2|NM\r", "AR", "100"),
}


@pytest.mark.parametrize("name", list(_MALFORMED))
def test_malformed_messages_are_rejected_and_the_connection_goes_on(
    name: str, conn: MllpConnection
) -> None:
    raw, code, error_code = _MALFORMED[name]
    ack = conn.send(raw.replace(b"\x0b", b"").replace(b"\x1c", b""))
    assert ack_code(ack) == code, str(ack)
    assert err(ack)[0] == error_code, str(ack)
    assert err(ack)[1] == "E"
    # Still answering on the same connection.
    probe = _id()
    after = conn.send(adt("A08", probe, wallet(Account.create().address)))
    assert ack_code(after) == "AA" and str(after.segment("MSA")(2)) == probe


def test_the_ack_echoes_the_control_id_of_a_rejected_message(conn: MllpConnection) -> None:
    ack = conn.send(oru("ECHO-1", mrn("1"), version="9.9"))
    assert str(ack.segment("MSA")(2)) == "ECHO-1"
    assert str(ack.segment("MSH")(12)) == "2.5.1"  # its own version is no version


def test_an_oversized_message_gets_ar_and_the_connection_goes_on(
    hl7_node: RunningNode, conn: MllpConnection
) -> None:
    limit = hl7_node.node.settings.hl7.max_message_bytes
    big = oru("BIG-1", mrn("1")) + b"OBX|2|TX|||" + b"x" * (limit + 10) + b"\r"
    ack = conn.send(big)
    assert ack_code(ack) == "AR" and err(ack)[0] == "104"
    assert str(ack.segment("MSA")(2)) == "BIG-1"
    assert ack_code(conn.send(adt("A08", _id(), wallet(Account.create().address)))) == "AA"


def test_garbage_between_frames_and_pipelined_frames(conn: MllpConnection) -> None:
    first, second = _id(), _id()
    address = wallet(Account.create().address)
    conn.send_raw(
        b"GET / HTTP/1.1\r\n\r\n"
        + frame(adt("A08", first, address))
        + b"\r\n\x00junk\x1c\r"
        + frame(adt("A08", second, address))
    )
    assert [str(conn.ack().segment("MSA")(2)) for _ in range(2)] == [first, second]
    # A frame that restarts before it ends is dropped; the new one is answered.
    third = _id()
    conn.send_raw(b"\x0bMSH|^~\\&|half a mess" + frame(adt("A08", third, address)))
    assert str(conn.ack().segment("MSA")(2)) == third
    # A frame split into single bytes is reassembled.
    fourth = _id()
    for byte in frame(adt("A08", fourth, address)):
        conn.send_raw(bytes([byte]))
    assert str(conn.ack().segment("MSA")(2)) == fourth


def test_an_abrupt_disconnect_mid_frame_leaves_the_listener_serving(
    hl7_node: RunningNode,
) -> None:
    address = hl7_address(hl7_node)
    for cut in (1, 40, len(oru("CUT", mrn("1"))) + 1):
        sock = socket.create_connection(address)
        sock.sendall(frame(oru("CUT", mrn("1")))[:cut])
        # SO_LINGER 0: close with a reset, as a crashed sender's host would.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    with connect(address) as conn:
        assert ack_code(conn.send(adt("A08", _id(), wallet(Account.create().address)))) == "AA"


def test_a_storage_outage_is_an_application_error_then_the_resend_is_stored(
    hl7_node: RunningNode, conn: MllpConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient, number = _registered(conn)

    def down(*_a: object, **_kw: object) -> None:
        raise BackendUnavailable("blob store unreachable")

    control = _id()
    with monkeypatch.context() as m:
        m.setattr(hl7_node.node.blobs, "put_many", down)
        ack = conn.send(oru(control, mrn(number)))
    assert ack_code(ack) == "AE" and err(ack)[0] == "207"
    assert hl7_node.node.index.count_records(RecordQuery(patient=patient.address)) == 0
    resent = conn.send(oru(control, mrn(number)))
    assert ack_code(resent) == "AA" and "\rERR|" not in str(resent)
    assert hl7_node.node.index.count_records(RecordQuery(patient=patient.address)) == 1


@pytest.mark.integration
def test_production_backends_store_and_dedupe(production_hl7_node: RunningNode) -> None:
    with connect(hl7_address(production_hl7_node)) as conn:
        patient, number = _registered(conn)
        control = _id()
        first = conn.send(oru(control, mrn(number)))
        again = conn.send(oru(control, mrn(number)))
        assert ack_code(first) == ack_code(again) == "AA"
        row = _record(production_hl7_node, str(first.segment("MSA")(3)))
        assert row.patient == patient.address and row.document is not None
        assert row.document.identifier == f"urn:emr-node:hl7:{FACILITY}|{control}"
        assert err(again)[0] == "205"
        with production_hl7_node.client() as public:
            session = public.login(patient)
            assert public.read("0x" + row.record_id.hex(), session).content.startswith(b"MSH|")


def test_the_same_message_on_many_connections_at_once_is_stored_once(
    hl7_node: RunningNode, conn: MllpConnection
) -> None:
    patient, number = _registered(conn)
    control = _id()
    raw = oru(control, mrn(number))
    address = hl7_address(hl7_node)
    acks: list[hl7.Message] = []
    barrier = threading.Barrier(6)

    def send() -> None:
        with connect(address) as c:
            barrier.wait()
            acks.append(c.send(raw))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [ack_code(a) for a in acks] == ["AA"] * 6, [str(a) for a in acks]
    assert len({str(a.segment("MSA")(3)) for a in acks}) == 1
    assert hl7_node.node.index.count_records(RecordQuery(patient=patient.address)) == 1


def test_the_hl7_librarys_own_client_and_mllp_send(hl7_node: RunningNode, tmp_path: Path) -> None:
    """What docs/hl7v2.md tells an integrator to run."""
    host, port = hl7_address(hl7_node)
    patient = Account.create()
    with MLLPClient(host, port) as client:
        answer = client.send_message(oru(_id(), wallet(patient.address)).decode())
    ack = hl7.parse(answer.strip(b"\x0b\x1c\r").decode())
    assert ack_code(ack) == "AA", str(ack)
    sample = tmp_path / "oru.hl7"
    # As an integrator would save it: one segment per line.
    sample.write_bytes(oru(_id(), wallet(patient.address)).replace(b"\r", b"\n"))
    mllp_send = str(Path(sys.executable).with_name("mllp_send"))
    sent = subprocess.run(
        [mllp_send, "--loose", "--file", str(sample), "--port", str(port), host],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert b"MSA|AA|" in sent.stdout, sent.stdout
    assert hl7_node.node.index.count_records(RecordQuery(patient=patient.address)) == 2
