"""Storing a received instance: the one step the Storage SCP (C-STORE) and STOW-RS share.

Parse the Part 10 bytes, find the patient's wallet through the patient identifier
directory, refuse or accept a re-sent instance, and upload it through the node's upload
coalescer (encrypted, indexed and queued for anchoring like any record). An outcome is
Success only once the record is committed. Statuses follow PS3.4 Annex B (Storage Service
Class) and PS3.7 Annex C; docs/dicom.md lists them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import anyio.to_thread

from node.chain.exceptions import ChainUnavailable
from node.coalescer import Coalescer
from node.dicom.instance import (
    CATEGORY,
    CONTENT_TYPE,
    DicomInstance,
    InvalidInstance,
    parse_instance,
)
from node.exceptions import Conflict
from node.flows.upload_record import UploadRequest
from node.hl7.mapping import HL7_SYSTEM_PREFIX
from node.patients import WALLET_SYSTEM, PatientDirectory
from node.settings import DicomSettings
from storage.abc import RecordIndexAPI
from storage.exceptions import BackendUnavailable, DuplicateRecord
from storage.models import RecordQuery, RecordRow

log = logging.getLogger(__name__)

# PatientIDs without an issuer, pushed by a modality: local to its calling AE title.
DICOM_SYSTEM_PREFIX = "urn:emr-node:dicom:"


class StoreStatus(IntEnum):
    """C-STORE response statuses (and STOW-RS FailureReason values) the node answers."""

    SUCCESS = 0x0000
    # Refused: Out of Resources (PS3.4 B.2.3): storage, chain or the node is unavailable
    # now; the SCU keeps the instance and retries.
    OUT_OF_RESOURCES = 0xA700
    # Error: Data Set does not match SOP Class: the data set's SOP Class/Instance UID is not
    # the one the C-STORE request names.
    DOES_NOT_MATCH = 0xA900
    # Error: Cannot understand (Cxxx; the low bits are the node's own, PS3.4 B.2.3):
    CANNOT_UNDERSTAND = 0xC000  # not DICOM, truncated, or a required attribute missing
    UNKNOWN_PATIENT = 0xC001  # the PatientID is linked to no patient wallet (yet)
    TOO_LARGE = 0xC002  # larger than dicom.max_instance_bytes
    OTHER_PATIENT = 0xC003  # this SOP Instance UID is stored already, for another patient


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """What became of one instance. ``row`` is the stored record (also for a re-sent
    instance: the record stored the first time)."""

    status: StoreStatus
    reason: str = ""  # ErrorComment: at most 64 characters, never PHI
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    row: RecordRow | None = None
    duplicate: bool = False

    @property
    def stored(self) -> bool:
        return self.status is StoreStatus.SUCCESS

    @staticmethod
    def of(
        instance: DicomInstance | None,
        status: StoreStatus,
        reason: str = "",
        row: RecordRow | None = None,
        *,
        duplicate: bool = False,
    ) -> StoreOutcome:
        if instance is None:
            return StoreOutcome(status, reason[:64])
        return StoreOutcome(
            status,
            reason[:64],
            instance.sop_class_uid,
            instance.sop_instance_uid,
            instance.study_uid,
            instance.series_uid,
            row,
            duplicate,
        )


# Failures after which the same request can succeed later: the SCU should retry. (Conflict:
# the hospital is not a Consortium member yet; RuntimeError: the node is shutting down.)
_TRANSIENT = (BackendUnavailable, ChainUnavailable, Conflict, RuntimeError)
# Submits of one instance whose batch a batch-mate's duplicate identifier refused.
_ATTEMPTS = 2


@dataclass(frozen=True, slots=True)
class Prepared:
    """An instance ready to upload."""

    instance: DicomInstance
    request: UploadRequest


def issuer_system(namespace: str) -> str:
    """The directory system of a PatientID issued by ``namespace``: the system HL7 v2 ADT
    links the same assigning authority's identifiers under (node/hl7/mapping.py)."""
    return HL7_SYSTEM_PREFIX + namespace


class DicomIngest:
    """Turns received instances into records (one per SOP Instance UID)."""

    def __init__(
        self,
        *,
        uploads: Coalescer[UploadRequest, RecordRow],
        index: RecordIndexAPI,
        patients: PatientDirectory,
        max_instance_bytes: int,
        default_issuer: str | None = None,
    ) -> None:
        self._uploads = uploads
        self._index = index
        self._patients = patients
        self.max_instance_bytes = max_instance_bytes
        self._default_issuer = default_issuer

    @classmethod
    def of(
        cls,
        settings: DicomSettings,
        *,
        uploads: Coalescer[UploadRequest, RecordRow],
        index: RecordIndexAPI,
        patients: PatientDirectory,
    ) -> DicomIngest:
        """The ingest step as ``settings`` configures it: the Storage SCP's and STOW-RS's."""
        return cls(
            uploads=uploads,
            index=index,
            patients=patients,
            max_instance_bytes=settings.max_instance_bytes,
            default_issuer=settings.default_issuer,
        )

    def patient_systems(self, instance: DicomInstance, calling_ae: str | None) -> list[str]:
        """Where the instance's PatientID is looked up, in order (docs/dicom.md)."""
        systems = [WALLET_SYSTEM]  # a wallet address as PatientID names itself
        issuer = instance.issuer_of_patient_id or self._default_issuer
        if issuer:
            systems.append(issuer_system(issuer))
        elif calling_ae:
            systems.append(DICOM_SYSTEM_PREFIX + calling_ae)
        return systems

    def resolve_patient(self, instance: DicomInstance, calling_ae: str | None) -> str | None:
        for system in self.patient_systems(instance, calling_ae):
            address = self._patients.resolve(system, instance.patient_id)
            if address is not None:
                return address
        return None

    def existing(self, instance: DicomInstance) -> RecordRow | None:
        """The record an earlier copy of this instance became, if any."""
        rows = self._index.find_records(RecordQuery(identifier=instance.identifier, limit=1))
        return rows[0] if rows else None

    def prepare(
        self,
        data: bytes,
        *,
        calling_ae: str | None = None,
        expected: tuple[str, str] | None = None,
    ) -> Prepared | StoreOutcome:
        """The upload request for ``data``, or the outcome that makes one unnecessary (a
        failure, or a re-sent instance: Success with the first copy's row). Blocking: it
        parses and reads the directory and index. ``expected``: the (SOP Class, SOP
        Instance) UIDs a C-STORE request names."""
        if len(data) > self.max_instance_bytes:
            return StoreOutcome.of(None, StoreStatus.TOO_LARGE, "instance too large")
        try:
            instance = parse_instance(data)
        except InvalidInstance as err:
            return StoreOutcome.of(None, StoreStatus.CANNOT_UNDERSTAND, str(err))
        if expected is not None and expected != (
            instance.sop_class_uid,
            instance.sop_instance_uid,
        ):
            return StoreOutcome.of(
                instance, StoreStatus.DOES_NOT_MATCH, "SOP UIDs differ from the request"
            )
        patient = self.resolve_patient(instance, calling_ae)
        if patient is None:
            return StoreOutcome.of(
                instance, StoreStatus.UNKNOWN_PATIENT, "PatientID not linked to a patient"
            )
        outcome = self.if_stored(instance, patient)
        if outcome is not None:
            return outcome
        request = UploadRequest(
            patient=patient,
            category=CATEGORY,
            content_type=CONTENT_TYPE,
            content=data,
            document=instance.document(),
        )
        return Prepared(instance, request)

    def if_stored(self, instance: DicomInstance, patient: str) -> StoreOutcome | None:
        """The outcome of a re-sent instance (None: not stored yet): Success with the first
        copy's record, which is kept; a failure if that record is another patient's."""
        row = self.existing(instance)
        if row is None:
            return None
        if row.patient != patient:
            return StoreOutcome.of(
                instance, StoreStatus.OTHER_PATIENT, "SOP Instance UID stored for another"
            )
        log.info("DICOM instance re-sent; record 0x%s kept", row.record_id.hex())
        return StoreOutcome.of(instance, StoreStatus.SUCCESS, row=row, duplicate=True)

    def store(
        self,
        data: bytes,
        *,
        calling_ae: str | None = None,
        expected: tuple[str, str] | None = None,
    ) -> StoreOutcome:
        """Store one instance, blocking until its record is committed (a C-STORE)."""
        try:
            prepared = self.prepare(data, calling_ae=calling_ae, expected=expected)
            if isinstance(prepared, StoreOutcome):
                return prepared
            for _attempt in range(_ATTEMPTS):
                try:
                    row = self._uploads.submit(prepared.request)
                except DuplicateRecord:
                    outcome = self._after_duplicate(prepared)
                    if outcome is not None:
                        return outcome
                    continue
                return StoreOutcome.of(prepared.instance, StoreStatus.SUCCESS, row=row)
            return StoreOutcome.of(prepared.instance, StoreStatus.OUT_OF_RESOURCES, "busy")
        except _TRANSIENT as err:
            return _unavailable(err)

    def _after_duplicate(self, prepared: Prepared) -> StoreOutcome | None:
        """A commit refused for a duplicate identifier: ours (the same instance sent twice
        at once) or a batch-mate's (the whole batch is refused). None: submit again."""
        return self.if_stored(prepared.instance, prepared.request.patient)

    async def store_many(self, parts: Sequence[bytes]) -> list[StoreOutcome]:
        """Store the instances of one STOW-RS request, each on its own (one may fail while
        the others are stored), committed in the coalescer's group commits; awaited on
        the event loop, the blocking steps in worker threads."""
        prepared = await asyncio.gather(
            *(anyio.to_thread.run_sync(self._prepare_safely, d) for d in parts)
        )
        first: dict[str, int] = {}  # one submit per SOP instance, even if sent twice
        for i, item in enumerate(prepared):
            if isinstance(item, Prepared):
                first.setdefault(item.instance.identifier, i)
        committed = dict(
            zip(
                first.values(),
                await asyncio.gather(*(self._commit_async(prepared[i]) for i in first.values())),
                strict=True,
            )
        )
        outcomes: list[StoreOutcome] = []
        for i, item in enumerate(prepared):
            if isinstance(item, StoreOutcome):
                outcomes.append(item)
            elif i in committed:
                outcomes.append(committed[i])
            else:  # a second copy in the same request: what became of the first
                done = committed[first[item.instance.identifier]]
                outcomes.append(
                    StoreOutcome.of(
                        item.instance, done.status, done.reason, done.row, duplicate=True
                    )
                )
        return outcomes

    def _prepare_safely(self, data: bytes) -> Prepared | StoreOutcome:
        try:
            return self.prepare(data)
        except _TRANSIENT as err:
            return _unavailable(err)

    async def _commit_async(self, prepared: Prepared | StoreOutcome) -> StoreOutcome:
        assert isinstance(prepared, Prepared)
        try:
            for _attempt in range(_ATTEMPTS):
                try:
                    row = await self._uploads.submit_async(prepared.request)
                except DuplicateRecord:
                    outcome = await anyio.to_thread.run_sync(self._after_duplicate, prepared)
                    if outcome is not None:
                        return outcome
                    continue
                return StoreOutcome.of(prepared.instance, StoreStatus.SUCCESS, row=row)
            return StoreOutcome.of(prepared.instance, StoreStatus.OUT_OF_RESOURCES, "busy")
        except _TRANSIENT as err:
            return _unavailable(err)


def _unavailable(err: BaseException) -> StoreOutcome:
    log.warning("DICOM instance not stored, storage unavailable: %s", type(err).__name__)
    return StoreOutcome(StoreStatus.OUT_OF_RESOURCES, "storage unavailable: retry later")
