"""Original-mode acknowledgements (HL7 v2 chapter 2): ``MSH`` with sender and receiver
swapped, ``MSA`` (MSA-1 AA/AE/AR, MSA-2 the acknowledged MSH-10, MSA-3 a short text) and one
``ERR`` per condition.

Built as text rather than with python-hl7's ``create_ack``: an ACK must also answer a
message that never parsed, from the little ``read_header`` could read. It reuses the
message's own encoding characters, so the echoed fields go back exactly as they came.
ERR carries both the v2.3/2.4 field ERR-1 and the v2.5+ fields ERR-2 (location), ERR-3
(table 0357 code), ERR-4 (severity) and ERR-8 (user message): a receiver of either
generation finds what it reads.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from node.hl7.message import ERROR_TEXT, SUPPORTED_VERSIONS, Header

DEFAULT_APPLICATION = "EMR-NODE"
_ACK_VERSION = "2.5.1"  # for a message whose own version is unreadable or unsupported


@dataclass(frozen=True, slots=True)
class Condition:
    """One ERR segment: ``code`` from table 0357, ``severity`` from table 0516 (E error,
    I information), ``location`` (segment id, sequence, field) when known."""

    code: int
    text: str
    severity: str = "E"
    location: tuple[str, int, int] | None = None


def escape(value: str, header: Header) -> str:
    """``value`` as HL7 text under the message's encoding characters: separators and the
    escape character escaped, control characters dropped."""
    comp, rep, esc = header.encoding[0], header.encoding[1], header.encoding[2]
    sub = header.encoding[3]
    trunc = header.encoding[4] if len(header.encoding) > 4 else None
    out: list[str] = []
    for c in value:
        if c == esc:
            out.append(f"{esc}E{esc}")
        elif c == header.field_sep:
            out.append(f"{esc}F{esc}")
        elif c == comp:
            out.append(f"{esc}S{esc}")
        elif c == rep:
            out.append(f"{esc}R{esc}")
        elif c == sub:
            out.append(f"{esc}T{esc}")
        elif c == trunc:
            out.append(f"{esc}P{esc}")
        elif c.isprintable():
            out.append(c)
    return "".join(out)


def _first_component(raw: str, header: Header) -> str:
    return raw.split(header.component_sep, 1)[0]


def build_ack(
    header: Header,
    ack_code: str,
    *,
    text: str = "",
    conditions: tuple[Condition, ...] = (),
    application: str = DEFAULT_APPLICATION,
    facility: str = "",
) -> bytes:
    """The ACK to the message ``header`` came from. ``application`` and ``facility`` name
    the node when the message's MSH-5/MSH-6 (which the ACK's MSH-3/4 echo) are empty."""
    f = header.field_sep
    c = header.component_sep
    trigger = ""
    parts = header.message_type.split(c)
    if len(parts) > 1 and parts[1].isalnum() and len(parts[1]) <= 3:
        trigger = parts[1]
    version = header.version if header.version in SUPPORTED_VERSIONS else _ACK_VERSION
    msh = [
        "MSH",
        header.encoding,
        header.receiving_application or escape(application, header),
        header.receiving_facility or escape(facility, header),
        header.sending_application,
        header.sending_facility,
        time.strftime("%Y%m%d%H%M%S", time.gmtime()) + "+0000",
        "",
        c.join(["ACK", trigger, "ACK"]) if trigger else "ACK",
        secrets.token_hex(10).upper(),
        _first_component(header.processing_id, header) or "P",
        version,
    ]
    segments = [
        f.join(msh),
        f.join(["MSA", ack_code, header.control_id, escape(text[:80], header)]),
    ]
    sub = header.encoding[3]
    for cond in conditions:
        name = ERROR_TEXT.get(cond.code, "Error")
        seg, seq, field = cond.location or ("", 0, 0)
        loc = [seg, str(seq) if seq else "", str(field) if field else ""]
        segments.append(
            f.join(
                [
                    "ERR",
                    c.join([*loc, sub.join([str(cond.code), name, "HL70357"])]),  # ERR-1
                    c.join(loc) if seg else "",  # ERR-2
                    c.join([str(cond.code), name, "HL70357"]),  # ERR-3
                    cond.severity,  # ERR-4
                    "",
                    "",
                    "",
                    escape(cond.text[:250], header),  # ERR-8
                ]
            )
        )
    body = "\r".join(segments) + "\r"
    codec = "latin-1" if "8859" in header.charset else "utf-8"
    return body.encode(codec, "replace")
