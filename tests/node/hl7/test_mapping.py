"""Message checks, PID-3 mapping, HL7 timestamps and ACK building, without a node."""

from __future__ import annotations

import calendar

import hl7
import pytest

from node.hl7.ack import Condition, build_ack, escape
from node.hl7.mapping import hl7_time, patient_ids
from node.hl7.message import Header, Hl7Error, Message, read_header
from tests.node.hl7.messages import message, msh, oru, wallet

ADDRESS = "0x52908400098527886E0F7030069857D2E4169EE7"


def _parse(raw: bytes) -> Message:
    return Message(raw, read_header(raw))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026", (2026, 1, 1, 0, 0, 0)),
        ("202602", (2026, 2, 1, 0, 0, 0)),
        ("20260203", (2026, 2, 3, 0, 0, 0)),
        ("202602031415", (2026, 2, 3, 14, 15, 0)),
        ("20260203141516.1234", (2026, 2, 3, 14, 15, 16)),
        ("20260203141516-0500", (2026, 2, 3, 19, 15, 16)),
        ("20260203141516+0130", (2026, 2, 3, 12, 45, 16)),
    ],
)
def test_hl7_timestamps(value: str, expected: tuple[int, ...]) -> None:
    assert hl7_time(value) == calendar.timegm((*expected, 0, 0, 0))


@pytest.mark.parametrize(
    "value", ["", "20261301", "20260230", "20260230x", "2026020325", "abc", "20260132", "0000"]
)
def test_bad_timestamps_are_none(value: str) -> None:
    assert hl7_time(value) is None


def test_pid3_systems() -> None:
    msg = _parse(
        message(
            msh("ORU^R01", "1"),
            "PID|1||A1^^^GENHOSP^MR~B2^^^&2.16.840.1.113883.4.1&ISO^SS~C3~D4^^^&urn:x:y&URI"
            f"~{wallet(ADDRESS.lower())}~~E5^^^&F0E1D2C3-0000-4000-8000-000000000000&UUID",
        )
    )
    ids = patient_ids(msg)
    assert ids.wallet == ADDRESS
    assert ids.identifiers == [
        ("urn:emr-node:hl7:GENHOSP", "A1"),
        ("urn:oid:2.16.840.1.113883.4.1", "B2"),
        ("urn:emr-node:hl7:GENHOSP", "C3"),  # no authority: the sending facility's
        ("urn:x:y", "D4"),
        ("urn:uuid:f0e1d2c3-0000-4000-8000-000000000000", "E5"),
    ]


def test_escaped_values_are_unescaped() -> None:
    msg = _parse(message(msh("ORU^R01", "1"), r"PID|1||A\S\1^^^GEN\T\HOSP^MR"))
    assert patient_ids(msg).identifiers == [("urn:emr-node:hl7:GEN&HOSP", "A^1")]


def test_two_wallets_are_refused() -> None:
    other = "0x" + "11" * 20
    msg = _parse(message(msh("ORU^R01", "1"), f"PID|1||{wallet(ADDRESS)}~{wallet(other)}"))
    with pytest.raises(Hl7Error) as err:
        patient_ids(msg)
    assert (err.value.ack_code, err.value.code) == ("AR", 102)


def test_the_header_of_a_broken_message_is_still_read() -> None:
    header = read_header(b"MSH|^~\\&|APP|FAC|RAPP|RFAC|2026||ORU^R01|CTRL-9|P|2.4\nPID|\xff\xfe")
    assert (header.sending_facility, header.control_id, header.version) == ("FAC", "CTRL-9", "2.4")
    assert read_header(b"\x00\x01binary") == Header()
    assert read_header(b"MSH|AAAA|x") == Header()  # letters are no encoding characters


def test_acks_reuse_the_message_encoding_characters_and_escape_text() -> None:
    raw = oru("C1", wallet(ADDRESS)).replace(b"|^~\\&|", b"|#~\\&|", 1).replace(b"^", b"#")
    header = read_header(raw)
    assert header.encoding == "#~\\&"
    ack = build_ack(header, "AE", text="a|b#c", conditions=(Condition(204, "x~y"),))
    text = ack.decode()
    assert text.startswith("MSH|#~\\&|EMR|NODE|LABSYS|GENHOSP|")
    assert "|ACK#R01#ACK|" in text
    assert "MSA|AE|C1|a\\F\\b\\S\\c\r" in text
    assert "|204#Unknown key identifier#HL70357|E||||x\\R\\y\r" in text
    parsed = hl7.parse(text)
    assert str(parsed.segment("MSA")(2)) == "C1"
    assert escape("\\", header) == "\\E\\"


def test_a_header_too_broken_to_echo_gets_a_default_ack() -> None:
    ack = hl7.parse(build_ack(read_header(b"garbage"), "AR", application="EMR-NODE").decode())
    head = ack.segment("MSH")
    assert (str(head(3)), str(head(9)), str(head(12))) == ("EMR-NODE", "ACK", "2.5.1")
    assert str(ack.segment("MSA")(1)) == "AR"
