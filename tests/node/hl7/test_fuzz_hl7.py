"""Fuzzing the HL7 listener over a real MLLP connection to an in-process node: random bytes,
random frames and mutated sample messages. Each answer is a well-formed ACK (AA, AE or AR)
or the node closes the connection; a probe afterwards is always answered; nothing hangs
(every socket read has a timeout)."""

from __future__ import annotations

import secrets

import hl7
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.hl7.mllp import frame
from tests.node.conftest import RunningNode
from tests.node.hl7.conftest import hl7_address
from tests.node.hl7.messages import MllpConnection, adt, mdm, mrn, oru, wallet

_WALLET = wallet(Account.create().address)
_SAMPLES = [
    oru("FUZZ-ORU", mrn("FUZZ-1"), _WALLET),
    mdm("FUZZ-MDM", mrn("FUZZ-1"), _WALLET),
    adt("A08", "FUZZ-ADT", _WALLET),
]
_SPECIAL = b"|^~\\&\r\n\x0b\x1c\x00\xff"


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SAMPLES)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "replace" and data:
            data[at] = draw(st.sampled_from(list(_SPECIAL) + list(range(256))))
        elif op == "insert":
            data[at:at] = draw(
                st.binary(max_size=8) | st.sampled_from([bytes([c]) for c in _SPECIAL])
            )
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        else:
            del data[at:]
    return bytes(data)


# What goes on the wire: raw bytes as they come, or framed (a frame's content may itself
# hold frame bytes, which splits it).
_payloads = st.one_of(
    st.binary(max_size=3000),
    st.binary(max_size=3000).map(frame),
    _mutated().map(frame),
    _mutated(),
)


def _answers_until(conn: MllpConnection, probe: str) -> bool:
    """Read ACKs until the probe's; False if the node closed the connection first."""
    while True:
        try:
            raw = conn.ack_bytes()
        except (ConnectionError, OSError):
            return False
        ack = hl7.parse(raw.decode())
        msa = ack.segment("MSA")
        assert str(msa(1)) in ("AA", "AE", "AR"), raw
        if str(msa(1)) != "AA":
            assert ack.segments("ERR"), raw
        if str(msa(2)) == probe:
            assert str(msa(1)) == "AA", raw
            return True


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(payload=_payloads)
def test_any_bytes_get_acks_or_a_close_and_the_listener_goes_on(
    hl7_node: RunningNode, payload: bytes
) -> None:
    address = hl7_address(hl7_node)
    probe = "PROBE-" + secrets.token_hex(4)
    conn = MllpConnection(address, timeout=30)
    try:
        # A lone start block or an unfinished frame: the probe's own start block restarts.
        conn.send_raw(payload)
        conn.send_raw(frame(adt("A08", probe, _WALLET)))
        answered = _answers_until(conn, probe)
    finally:
        conn.close()
    if not answered:  # closed (e.g. too much garbage): a new connection is served
        with MllpConnection(address, timeout=30) as again:
            probe = "PROBE-" + secrets.token_hex(4)
            assert str(again.send(adt("A08", probe, _WALLET)).segment("MSA")(2)) == probe
