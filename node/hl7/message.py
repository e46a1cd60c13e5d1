"""One HL7 v2 message: decoded, checked and parsed with python-hl7, with forgiving field
access (a missing field is an empty string, never an IndexError).

python-hl7 parses almost anything that starts with ``MSH`` and trusts the encoding
characters it finds; the checks here come first, so that what it gets is a message whose
separators, segment ids and characters are sound, and everything else is refused with the
HL7 error code (table 0357) the ACK carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import hl7

from node.exceptions import NodeError

# HL7 table 0357 (message error condition codes), the ones this listener answers.
SEGMENT_SEQUENCE_ERROR = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
VALUE_TOO_LONG = 104
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT_CODE = 201
UNSUPPORTED_PROCESSING_ID = 202
UNSUPPORTED_VERSION_ID = 203
UNKNOWN_KEY_IDENTIFIER = 204
DUPLICATE_KEY_IDENTIFIER = 205
APPLICATION_INTERNAL_ERROR = 207

ERROR_TEXT = {
    0: "Message accepted",
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    VALUE_TOO_LONG: "Value too long",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    UNSUPPORTED_VERSION_ID: "Unsupported version id",
    UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
}

# 2.3 to 2.8.2: the versions whose MSH, PID, OBR, OBX, TXA and ERR fields used here agree.
SUPPORTED_VERSIONS = frozenset(
    {"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"}
)
MAX_CONTROL_ID = 199  # MSH-10's length in v2.5+
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
# Raw control characters have no place in HL7 text (they are escaped, \X0D\); a tab is
# tolerated since some senders put one in report text.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x0c\x0e-\x1f\x7f]")


class Hl7Error(NodeError):
    """A message the listener does not take: ``ack_code`` AR (the message itself is not
    acceptable: resending it unchanged will not help) or AE (well-formed, but the node
    cannot process it: unknown patient, a clash, storage down). ``code`` is from HL7
    table 0357; ``location`` is the ERR-2 location (segment id, sequence, field)."""

    def __init__(
        self,
        ack_code: str,
        code: int,
        text: str,
        location: tuple[str, int, int] | None = None,
    ) -> None:
        super().__init__(text)
        self.ack_code = ack_code
        self.code = code
        self.text = text
        self.location = location


def reject(code: int, text: str, location: tuple[str, int, int] | None = None) -> Hl7Error:
    return Hl7Error("AR", code, text, location)


def error(code: int, text: str, location: tuple[str, int, int] | None = None) -> Hl7Error:
    return Hl7Error("AE", code, text, location)


@dataclass(frozen=True, slots=True)
class Header:
    """What the ACK echoes from a message's MSH, read without trusting the rest of the
    message: raw field text (still escaped with the message's own encoding characters,
    which the ACK reuses), empty where the header could not be read."""

    field_sep: str = "|"
    encoding: str = "^~\\&"
    sending_application: str = ""  # MSH-3
    sending_facility: str = ""  # MSH-4
    receiving_application: str = ""  # MSH-5
    receiving_facility: str = ""  # MSH-6
    message_type: str = ""  # MSH-9
    control_id: str = ""  # MSH-10
    processing_id: str = ""  # MSH-11
    version: str = ""  # MSH-12
    charset: str = ""  # MSH-18

    @property
    def component_sep(self) -> str:
        return self.encoding[0]


def _sound_encoding(field_sep: str, encoding: str) -> bool:
    chars = field_sep + encoding
    return (
        4 <= len(encoding) <= 5
        and len(set(chars)) == len(chars)
        and all(not c.isalnum() and c.isprintable() and c != " " for c in chars)
    )


def read_header(raw: bytes) -> Header:
    """The MSH of ``raw`` as far as it can be read (never raises): enough to address an ACK
    to a message that is otherwise broken."""
    first = raw[:4096].split(b"\r", 1)[0].split(b"\n", 1)[0]
    text = first.decode("utf-8", "replace").lstrip()
    if not text.startswith("MSH") or len(text) < 8:
        return Header()
    field_sep = text[3]
    parts = text.split(field_sep)
    encoding = parts[1] if len(parts) > 1 else ""
    if not _sound_encoding(field_sep, encoding):
        return Header()

    def msh(n: int) -> str:  # MSH-1 is the separator itself: MSH-n is parts[n - 1]
        value = parts[n - 1] if n - 1 < len(parts) else ""
        return "".join(c for c in value if c.isprintable())[:MAX_CONTROL_ID]

    return Header(
        field_sep=field_sep,
        encoding=encoding,
        sending_application=msh(3),
        sending_facility=msh(4),
        receiving_application=msh(5),
        receiving_facility=msh(6),
        message_type=msh(9),
        control_id=msh(10),
        processing_id=msh(11),
        version=msh(12),
        charset=msh(18),
    )


def _codec(charset: str) -> str:
    """MSH-18 (table 0211) to a Python codec; ASCII and unset read as UTF-8, its superset."""
    name = re.split(r"[~^]", charset, maxsplit=1)[0].strip().upper()
    if name in ("8859/1", "ISO-8859-1", "ISO IR100"):
        return "latin-1"
    if name in ("", "ASCII", "UNICODE UTF-8", "UTF-8", "ISO IR6", "UNICODE"):
        return "utf-8"
    raise reject(DATA_TYPE_ERROR, f"character set {name[:40]!r} (MSH-18) is not supported")


class Message:
    """A checked, parsed message. ``field`` and friends never raise on a missing field."""

    def __init__(self, raw: bytes, header: Header) -> None:
        self.raw = raw
        self.header = header
        text = self._decode(raw, header)
        self._msg = self._parse(text, header)
        self.segments: list[Any] = list(self._msg)
        # By id, once: the mapping asks for MSH, PID, OBR... several times per message.
        self._by_id: dict[str, list[Any]] = {}
        for segment in self.segments:
            self._by_id.setdefault(str(segment[0]), []).append(segment)

    @staticmethod
    def _decode(raw: bytes, header: Header) -> str:
        codec = _codec(header.charset)
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            raise reject(DATA_TYPE_ERROR, f"the message is not valid {codec} text") from None
        # Senders on Windows end segments with CR LF; a bare LF is no segment separator.
        text = text.replace("\r\n", "\r").strip("\r\n\t ")
        if "\n" in text:
            raise reject(SEGMENT_SEQUENCE_ERROR, "segments must be separated by <CR>, not <LF>")
        if _CONTROL.search(text):
            raise reject(DATA_TYPE_ERROR, "the message holds raw control characters")
        return text

    @staticmethod
    def _parse(text: str, header: Header) -> Any:
        if not text.startswith("MSH"):
            raise reject(SEGMENT_SEQUENCE_ERROR, "the message must start with an MSH segment")
        if len(text) < 8 or not _sound_encoding(text[3], header.encoding):
            raise reject(
                DATA_TYPE_ERROR,
                "MSH-1 and MSH-2 must be a field separator and 4 or 5 distinct encoding characters",
                ("MSH", 1, 2),
            )
        for n, segment in enumerate(text.split("\r"), start=1):
            if not segment:
                continue  # an empty line between segments
            if not _SEGMENT_ID.fullmatch(segment[:3]) or segment[3:4] not in ("", text[3]):
                raise reject(
                    SEGMENT_SEQUENCE_ERROR, f"segment {n} does not start with a segment id"
                )
        try:
            return hl7.parse("\r".join(s for s in text.split("\r") if s))
        except Exception as err:  # the library's errors are not typed: any is a parse failure
            raise reject(
                DATA_TYPE_ERROR, f"the message cannot be parsed ({type(err).__name__})"
            ) from None

    # -- access ------------------------------------------------------------------------
    def all(self, segment_id: str) -> list[Any]:
        return list(self._by_id.get(segment_id, ()))

    def first(self, segment_id: str) -> Any | None:
        found = self.all(segment_id)
        return found[0] if found else None

    def repetitions(self, segment: Any, n: int) -> list[list[list[str]]]:
        """Field ``n`` of ``segment`` as repetitions of components of subcomponents,
        unescaped; [] when the field is absent."""
        if segment is None or n >= len(segment):
            return []
        field = segment[n]
        if str(segment[0]) == "MSH" and n <= 2:
            return [[[str(field[0]) if len(field) else ""]]]
        return [
            [[self._unescape(s) for s in _items(c)] for c in _items(rep)] for rep in _items(field)
        ]

    def component(self, segment: Any, n: int, comp: int = 1, rep: int = 1, sub: int = 1) -> str:
        """One leaf of field ``n`` (1-based repetition, component, subcomponent); ""
        when absent."""
        reps = self.repetitions(segment, n)
        try:
            return reps[rep - 1][comp - 1][sub - 1].strip()
        except IndexError:
            return ""

    def _unescape(self, value: str) -> str:
        try:
            return str(self._msg.unescape(value))
        except Exception:  # a malformed escape sequence: keep the text as sent
            return value


def _items(node: Any) -> list[Any]:
    """The children of a python-hl7 container; a plain string is a leaf of its own."""
    if isinstance(node, str):
        return [node]
    return list(node) if len(node) else [""]
