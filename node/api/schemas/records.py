from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from node.api.schemas.common import (
    CATEGORY_PATTERN,
    MEDIA_TYPE_MAX_LENGTH,
    MEDIA_TYPE_PATTERN,
    REASON_PATTERN,
    Address,
    Hex32,
    to_hex,
)
from storage.models import AnchorReceipt, DocumentMeta, RecordRow


class DocumentPublic(BaseModel):
    """Document metadata a hospital standard added (FHIR, HL7 v2, DICOM) or an importer set."""

    source: str = Field(description="the interface that created it: api, fhir, hl7v2, dicom")
    type_system: str | None = Field(None, description="coding system of the document type")
    type_code: str | None = Field(None, description="document type code, e.g. a LOINC code")
    type_display: str | None = None
    title: str | None = None
    clinical_time: int | None = Field(None, description="unix seconds the content is about")
    identifier: str | None = Field(None, description="'system|value', unique on this node")
    attributes: dict[str, str] = Field(
        default_factory=dict, description="searchable attributes, e.g. dicom.study_uid"
    )

    @classmethod
    def of(cls, doc: DocumentMeta) -> DocumentPublic:
        return cls(
            source=doc.source,
            type_system=doc.type_system,
            type_code=doc.type_code,
            type_display=doc.type_display,
            title=doc.title,
            clinical_time=doc.clinical_time,
            identifier=doc.identifier,
            attributes=dict(doc.attributes),
        )


MAX_CLINICAL_TIME = 10**11  # seconds: exact in JSON numbers, far inside the index's range


class DocumentIn(BaseModel):
    """Document metadata of a record uploaded through the node's own API (source ``api``)."""

    model_config = ConfigDict(extra="forbid")

    type_system: str | None = Field(None, min_length=1, max_length=255)
    type_code: str | None = Field(None, min_length=1, max_length=255)
    type_display: str | None = Field(None, min_length=1, max_length=255)
    title: str | None = Field(None, min_length=1, max_length=1024)
    clinical_time: int | None = Field(
        None,
        ge=-MAX_CLINICAL_TIME,
        le=MAX_CLINICAL_TIME,
        description="unix seconds the content is about (within about 3,000 years of 1970)",
    )
    identifier: str | None = Field(
        None, min_length=1, max_length=255, description="'system|value', unique on this node"
    )

    def meta(self) -> DocumentMeta:
        return DocumentMeta(
            source="api",
            type_system=self.type_system,
            type_code=self.type_code,
            type_display=self.type_display,
            title=self.title,
            clinical_time=self.clinical_time,
            identifier=self.identifier,
        )


class RecordPublic(BaseModel):
    record_id: str
    patient: str
    category: str
    content_type: str
    size: int
    cid: str
    content_hash: str
    creator: str
    created_at: int
    previous_id: str | None
    anchored: bool | None = None
    erased: bool = False  # crypto-shredded: the content is gone for good, the hash stays
    erased_at: int | None = None
    erase_tx: str | None = None  # the RecordErased tombstone; None until anchored
    document: DocumentPublic | None = None  # metadata of a standard, where there is any

    @classmethod
    def of(cls, row: RecordRow, anchored: bool | None = None) -> RecordPublic:
        return cls(
            record_id=to_hex(row.record_id),
            patient=row.patient,
            category=row.category,
            content_type=row.content_type,
            size=row.size,
            cid=row.cid,
            content_hash=to_hex(row.content_hash),
            creator=row.creator,
            created_at=row.created_at,
            previous_id=to_hex(row.previous_id) if row.previous_id else None,
            anchored=anchored,
            erased=row.erased,
            erased_at=row.erased_at,
            erase_tx=to_hex(row.erase_tx) if row.erase_tx else None,
            document=DocumentPublic.of(row.document) if row.document else None,
        )


class EraseIn(BaseModel):
    reason: str = Field(
        min_length=1,
        max_length=1000,
        pattern=REASON_PATTERN,
        description="why (not blank); only its keccak256 goes on-chain",
    )


class ErasureOut(BaseModel):
    reason_hash: str
    erased: list[RecordPublic]  # erased by this request
    already_erased: list[str]  # ids erased before (unchanged)


class ReceiptPublic(BaseModel):
    record_id: str
    status: str  # "anchored" | "pending"
    batch_id: int | None = None
    root: str | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    anchored_at: int | None = None
    leaf: str | None = None
    proof: list[str] = []
    # The leaf's preimage (with record_id): what POST /audit/receipts/verify at any node
    # needs to check the receipt from the chain alone. None on a pending receipt.
    patient: str | None = None
    content_hash: str | None = None
    previous_id: str | None = None

    @classmethod
    def of(
        cls, record_id: bytes, receipt: AnchorReceipt | None, row: RecordRow | None = None
    ) -> ReceiptPublic:
        if receipt is None or receipt.batch is None:
            return cls(record_id=to_hex(record_id), status="pending")
        b = receipt.batch
        return cls(
            record_id=to_hex(record_id),
            status="anchored",
            batch_id=b.batch_id,
            root=to_hex(b.root),
            tx_hash=to_hex(b.tx_hash),
            block_number=b.block_number,
            anchored_at=b.anchored_at,
            leaf=to_hex(receipt.leaf),
            proof=[to_hex(p) for p in receipt.proof],
            patient=row.patient if row else None,
            content_hash=to_hex(row.content_hash) if row else None,
            previous_id=to_hex(row.previous_id) if row and row.previous_id else None,
        )


# -- batch uploads ----------------------------------------------------------------------

# A multipart part name a batch manifest can refer to (ASCII, no quotes: it is written into a
# Content-Disposition header by the client).
BATCH_PART_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
BATCH_MANIFEST_PART = "manifest"


class BatchEntryIn(BaseModel):
    """One record of ``POST /records/batch``: its fields and the name of its file part."""

    model_config = ConfigDict(extra="forbid")

    part: str = Field(
        pattern=BATCH_PART_PATTERN,
        description="name of the multipart file part holding this record's content "
        "(unique within the request, not 'manifest')",
        examples=["r0"],
        json_schema_extra={"not": {"const": BATCH_MANIFEST_PART}},
    )
    patient: Address = Field(description="the patient's wallet address")
    category: str = Field(pattern=CATEGORY_PATTERN, description="e.g. lab, imaging, note")
    content_type: str | None = Field(
        None,
        pattern=MEDIA_TYPE_PATTERN,
        max_length=MEDIA_TYPE_MAX_LENGTH,
        description="the record's media type; default: the file part's, else "
        "application/octet-stream",
    )
    previous_id: Hex32 | None = Field(
        None, description="an existing record of the same patient this one supersedes"
    )
    document: DocumentIn | None = Field(
        None, description="document metadata (type, clinical time, title, unique identifier)"
    )

    @field_validator("part")
    @classmethod
    def _not_the_manifest(cls, value: str) -> str:
        if value == BATCH_MANIFEST_PART:
            raise ValueError("'manifest' is the manifest's own part")
        return value


BatchManifest = TypeAdapter(list[BatchEntryIn])
