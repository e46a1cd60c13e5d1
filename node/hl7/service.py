"""One HL7 v2 message in, one ACK out: the checks a sender must pass (facility, version,
type, processing id), then the node's own services: the upload group commit for ORU^R01
and MDM^T02, the patient directory for ADT^A04/A08. Nothing here stores or decides access
itself.

An AA is answered only after the record is committed (``submit`` returns once its batch is
in the index); a failure to store answers AE so the sender sends it again. A re-sent
message (same facility, same MSH-10) finds the record its first copy made and gets AA with
that record's id (and an informational ERR 205), never a second record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from node.coalescer import Coalescer
from node.exceptions import Conflict, InvalidRequest
from node.flows.upload_record import UploadRequest
from node.hl7.ack import DEFAULT_APPLICATION, Condition, build_ack
from node.hl7.mapping import (
    CONTENT_TYPE,
    control_id,
    document_meta,
    facility_id,
    patient_ids,
    record_identifier,
)
from node.hl7.message import (
    APPLICATION_INTERNAL_ERROR,
    DATA_TYPE_ERROR,
    DUPLICATE_KEY_IDENTIFIER,
    MAX_CONTROL_ID,
    REQUIRED_FIELD_MISSING,
    SUPPORTED_VERSIONS,
    UNKNOWN_KEY_IDENTIFIER,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_PROCESSING_ID,
    UNSUPPORTED_VERSION_ID,
    VALUE_TOO_LONG,
    Header,
    Hl7Error,
    Message,
    error,
    read_header,
    reject,
)
from node.patients import PatientDirectory
from node.settings import Hl7Settings
from storage.abc import RecordIndexAPI
from storage.exceptions import DuplicateRecord
from storage.models import RecordQuery, RecordRow

log = logging.getLogger(__name__)

SUPPORTED_TYPES = {"ORU": ("R01",), "MDM": ("T02",), "ADT": ("A04", "A08")}
MOVE_REASON = "MOVE"  # EVN-4 of an ADT^A08 that may move identifiers to its wallet
MAX_BATCH = 200  # messages of concurrent connections committed together


class Hl7Service:
    """``commit`` stores a batch of upload requests all or nothing (the node's
    ``uploads.commit_now``). Messages of concurrent connections are grouped into one commit
    with no waiting window: one connection has one message in flight (MLLP), so a window
    would only add latency; several connections share the commit that is running."""

    def __init__(
        self,
        settings: Hl7Settings,
        *,
        commit: Callable[[Sequence[UploadRequest]], Sequence[RecordRow]],
        patients: PatientDirectory,
        index: RecordIndexAPI,
        application: str = DEFAULT_APPLICATION,
        facility: str = "",
    ) -> None:
        self._settings = settings
        self._allowed = frozenset(settings.allowed_facilities)
        self._commit = commit
        self._uploads: Coalescer[UploadRequest, RecordRow] = Coalescer(
            commit, window=0.0, max_batch=MAX_BATCH, name="hl7-commit"
        )
        self._in_flight = 0
        self._claims: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._patients = patients
        self._index = index
        self._application = application
        self._facility = facility

    def close(self) -> None:
        """Commit what is queued, then stop."""
        self._uploads.close()

    # -- entry points ------------------------------------------------------------------
    def handle(self, raw: bytes) -> bytes:
        """The ACK to ``raw`` (one MLLP frame's content). Never raises."""
        header = read_header(raw)
        try:
            msg = Message(raw, header)
            message_type = self._check(msg)
            if message_type.startswith("ADT"):
                return self._register(msg, message_type)
            return self._store(msg, message_type)
        except Hl7Error as err:
            return self._ack(
                header, err.ack_code, err.text, Condition(err.code, err.text, "E", err.location)
            )
        except Exception:  # a message never takes the listener down
            log.exception("HL7 message %r failed", header.control_id[:40])
            text = "the node could not process the message; send it again later"
            return self._ack(header, "AE", text, Condition(APPLICATION_INTERNAL_ERROR, text))

    def too_large(self, head: bytes) -> bytes:
        """The AR to a frame past ``max_message_bytes``, of which ``head`` is the start."""
        text = f"the message is larger than {self._settings.max_message_bytes} bytes"
        return self._ack(read_header(head), "AR", text, Condition(VALUE_TOO_LONG, text))

    def _ack(self, header: Header, code: str, text: str, *conditions: Condition) -> bytes:
        return build_ack(
            header,
            code,
            text=text,
            conditions=conditions,
            application=self._application,
            facility=self._facility,
        )

    # -- checks ------------------------------------------------------------------------
    def _check(self, msg: Message) -> str:
        """The message type ("ORU^R01"...) of a message this node takes from this sender."""
        msh = msg.first("MSH")
        facility = facility_id(msg)
        if not facility:
            raise reject(REQUIRED_FIELD_MISSING, "MSH-4 (sending facility) is empty", ("MSH", 1, 4))
        if facility not in self._allowed:
            # MSH-4 is self-asserted: the peer network was checked at connect as well.
            raise reject(
                APPLICATION_INTERNAL_ERROR,
                "this sending facility (MSH-4) is not allowed to send to the node",
                ("MSH", 1, 4),
            )
        control = control_id(msg)
        if not control:
            raise reject(
                REQUIRED_FIELD_MISSING, "MSH-10 (message control id) is empty", ("MSH", 1, 10)
            )
        if len(control) > MAX_CONTROL_ID:
            raise reject(VALUE_TOO_LONG, "MSH-10 (message control id) is too long", ("MSH", 1, 10))
        version = msg.component(msh, 12)
        if not version:
            raise reject(REQUIRED_FIELD_MISSING, "MSH-12 (version id) is empty", ("MSH", 1, 12))
        if version not in SUPPORTED_VERSIONS:
            raise reject(
                UNSUPPORTED_VERSION_ID,
                f"version {version[:12]} is not supported (2.3 to 2.8.2)",
                ("MSH", 1, 12),
            )
        processing = msg.component(msh, 11)
        if not processing:
            raise reject(REQUIRED_FIELD_MISSING, "MSH-11 (processing id) is empty", ("MSH", 1, 11))
        if processing != "P":
            raise reject(
                UNSUPPORTED_PROCESSING_ID,
                "only production messages (MSH-11 P) are taken: records are real",
                ("MSH", 1, 11),
            )
        code, trigger = msg.component(msh, 9, 1), msg.component(msh, 9, 2)
        if not code:
            raise reject(REQUIRED_FIELD_MISSING, "MSH-9 (message type) is empty", ("MSH", 1, 9))
        if code not in SUPPORTED_TYPES:
            raise reject(
                UNSUPPORTED_MESSAGE_TYPE,
                f"message type {code[:8]} is not supported (ORU, MDM, ADT)",
                ("MSH", 1, 9),
            )
        if trigger not in SUPPORTED_TYPES[code]:
            raise reject(
                UNSUPPORTED_EVENT_CODE,
                f"event {code}^{trigger[:8]} is not supported",
                ("MSH", 1, 9),
            )
        return f"{code}^{trigger}"

    # -- ORU^R01, MDM^T02 --------------------------------------------------------------
    def _store(self, msg: Message, message_type: str) -> bytes:
        patient = self._patient(msg)
        category, meta = document_meta(msg, message_type)
        identifier = record_identifier(msg)
        request = UploadRequest(patient, category, CONTENT_TYPE, msg.raw, document=meta)
        with self._claim(identifier):
            existing = self._stored(identifier)
            if existing is None:
                row = self._store_one(request, msg)
                return self._ack(msg.header, "AA", f"record 0x{row.record_id.hex()}")
        # MSA-3 names the record (it fits MSA-3's 80 characters); ERR says it is a re-send.
        rid = f"record 0x{existing.record_id.hex()}"
        note = Condition(DUPLICATE_KEY_IDENTIFIER, f"already stored as {rid}", "I", ("MSH", 1, 10))
        return self._ack(msg.header, "AA", rid, note)

    @contextmanager
    def _claim(self, identifier: str) -> Iterator[None]:
        """Hold ``identifier`` while its message is stored: a copy arriving meanwhile on
        another connection waits, then finds the record, instead of joining the same commit
        (where two records with one identifier fail the whole batch)."""
        while True:
            with self._lock:
                busy = self._claims.get(identifier)
                if busy is None:
                    mine = self._claims[identifier] = threading.Event()
                    break
            busy.wait(60)
        try:
            yield
        finally:
            with self._lock:
                del self._claims[identifier]
            mine.set()

    def _store_one(self, request: UploadRequest, msg: Message) -> RecordRow:
        """Commit ``request``; raise Hl7Error if it cannot be."""
        try:
            try:
                return self._submit(request)
            except (Conflict, DuplicateRecord, InvalidRequest):
                # A shared commit is all or nothing: it fails for one member's fault (e.g.
                # an identifier another process stored). Alone, this one meets its own.
                return self._commit([request])[0]
        except (Conflict, DuplicateRecord):
            raise error(
                DUPLICATE_KEY_IDENTIFIER,
                "a record with this message's identifier is being stored; send it again",
                ("MSH", 1, 10),
            ) from None
        except InvalidRequest as err:
            raise reject(DATA_TYPE_ERROR, str(err)) from None
        except Exception as err:
            log.warning("HL7 message %r not stored: %s", control_id(msg)[:40], type(err).__name__)
            raise error(
                APPLICATION_INTERNAL_ERROR,
                "the node could not store the message now; send it again later",
            ) from None

    def _stored(self, identifier: str) -> RecordRow | None:
        rows = self._index.find_records(RecordQuery(identifier=identifier, limit=1))
        return rows[0] if rows else None

    def _submit(self, request: UploadRequest) -> RecordRow:
        """Commit ``request``; return its row once committed. Alone, in this thread: a
        hand-over to the group commit's thread costs a GIL switch (up to 5 ms beside the
        anchorer's EVM work) for nothing to group. Beside other messages in flight, through
        the group commit, so they share one."""
        with self._lock:
            alone = self._in_flight == 0
            self._in_flight += 1
        try:
            if alone:
                return self._commit([request])[0]
            return self._uploads.submit(request)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _patient(self, msg: Message) -> str:
        """The wallet PID-3 names: its WALLET repetition or the identifiers linked in the
        directory, which must all agree."""
        ids = patient_ids(msg)
        wallets = {ids.wallet} if ids.wallet else set()
        for system, value in ids.identifiers:
            found = self._patients.resolve(system, value)
            if found is not None:
                wallets.add(found)
        if not wallets:
            raise error(
                UNKNOWN_KEY_IDENTIFIER,
                "unknown patient: no PID-3 identifier is linked to a wallet (register the "
                "patient with ADT^A04 first)",
                ("PID", 1, 3),
            )
        if len(wallets) > 1:
            raise error(
                UNKNOWN_KEY_IDENTIFIER,
                "the PID-3 identifiers are linked to different wallets",
                ("PID", 1, 3),
            )
        return wallets.pop()

    # -- ADT^A04, ADT^A08 --------------------------------------------------------------
    def _register(self, msg: Message, message_type: str) -> bytes:
        ids = patient_ids(msg)
        if ids.wallet is None:
            raise reject(
                REQUIRED_FIELD_MISSING,
                "ADT needs a PID-3 repetition with identifier type WALLET (the patient's "
                "wallet address)",
                ("PID", 1, 3),
            )
        evn = msg.first("EVN")
        move = message_type == "ADT^A08" and msg.component(evn, 4).upper() == MOVE_REASON
        try:
            moved = self._patients.link_all(
                ids.identifiers, ids.wallet, source=f"hl7:{facility_id(msg)}", move=move
            )
        except Conflict:
            raise error(
                DUPLICATE_KEY_IDENTIFIER,
                "a PID-3 identifier is linked to another wallet; an ADT^A08 with EVN-4 MOVE "
                "may move it",
                ("PID", 1, 3),
            ) from None
        except InvalidRequest as err:
            raise reject(DATA_TYPE_ERROR, str(err), ("PID", 1, 3)) from None
        except Exception as err:
            log.warning("HL7 ADT %r not linked: %s", control_id(msg)[:40], type(err).__name__)
            raise error(
                APPLICATION_INTERNAL_ERROR,
                "the node could not link the identifiers now; send it again later",
            ) from None
        text = f"{len(ids.identifiers)} identifiers linked"
        if moved:
            note = f"{len(moved)} identifiers moved from another wallet"
            return self._ack(msg.header, "AA", text, Condition(0, note, "I", ("PID", 1, 3)))
        return self._ack(msg.header, "AA", text)
