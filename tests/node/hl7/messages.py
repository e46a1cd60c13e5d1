"""Sample HL7 v2 messages and a small MLLP client for the listener's tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import hl7

from node.hl7.mllp import frame

FACILITY = "GENHOSP"


def message(*segments: str) -> bytes:
    return ("\r".join(segments) + "\r").encode()


def msh(
    message_type: str,
    control_id: str,
    *,
    facility: str = FACILITY,
    version: str = "2.5.1",
    processing: str = "P",
) -> str:
    return (
        f"MSH|^~\\&|LABSYS|{facility}|EMR|NODE|20260101120000||{message_type}|{control_id}|"
        f"{processing}|{version}"
    )


def pid(*identifiers: str) -> str:
    return f"PID|1||{'~'.join(identifiers)}||Doe^Jane||19800101|F"


def mrn(value: str, authority: str = FACILITY) -> str:
    return f"{value}^^^{authority}^MR"


def wallet(address: str) -> str:
    return f"{address}^^^^WALLET"


def oru(control_id: str, *identifiers: str, **kw: str) -> bytes:
    return message(
        msh("ORU^R01^ORU_R01", control_id, **kw),
        pid(*identifiers),
        "OBR|1|PL123|FL456|2345-7^Glucose^LN|||20260101103000+0100||||||||||||||||||F",
        "OBX|1|NM|2345-7^Glucose^LN||5.5|mmol/L|3.9-6.1|N|||F",
    )


def mdm(control_id: str, *identifiers: str) -> bytes:
    return message(
        msh("MDM^T02^MDM_T02", control_id),
        "EVN|T02|20260101120000",
        pid(*identifiers),
        "PV1|1|O",
        "TXA|1|DS^Discharge summary^HL70270|TX|20251231180000||||||||DOC-77|||||AU",
        "OBX|1|TX|DS^Discharge summary^HL70270||Discharged home in good condition.",
    )


def adt(trigger: str, control_id: str, *identifiers: str, reason: str = "") -> bytes:
    return message(
        msh(f"ADT^{trigger}^ADT_A01", control_id),
        f"EVN|{trigger}|20260101120000||{reason}",
        pid(*identifiers),
        "PV1|1|O",
    )


class MllpConnection:
    """One TCP connection speaking MLLP: send a frame (or any bytes), read one ACK."""

    def __init__(self, address: tuple[str, int], timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self._buffer = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, msg: bytes) -> hl7.Message:
        self.send_raw(frame(msg))
        return self.ack()

    def ack_bytes(self) -> bytes:
        """The next framed answer; raises ConnectionError if the node closed the connection."""
        while b"\x1c\r" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the node")
            self._buffer += chunk
        block, self._buffer = self._buffer.split(b"\x1c\r", 1)
        assert block.startswith(b"\x0b"), block[:20]
        return block[1:]

    def ack(self) -> hl7.Message:
        return hl7.parse(self.ack_bytes().decode())

    def closed_by_peer(self) -> bool:
        """Whether the node closed the connection (EOF or reset), waiting for it."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MllpConnection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@contextmanager
def connect(address: tuple[str, int]) -> Iterator[MllpConnection]:
    conn = MllpConnection(address)
    try:
        yield conn
    finally:
        conn.close()


def ack_code(ack: hl7.Message) -> str:
    return str(ack.segment("MSA")(1))


def err(ack: hl7.Message) -> tuple[str, str, str]:
    """(ERR-3.1 code, ERR-4 severity, ERR-8 text) of the first ERR."""
    seg = ack.segment("ERR")
    return (
        str(seg.extract_field(field_num=3, component_num=1)),
        str(seg.extract_field(field_num=4)),
        str(seg.extract_field(field_num=8)),
    )
