"""Conformance suites for the storage interfaces (as py-evm's eth/tools/db/base.py).

A backend's test module subclasses a suite and implements its ``make_*`` method::

    class TestMySQLRecordIndex(RecordIndexConformance):
        def make_record_index(self, location: Path) -> RecordIndexAPI:
            return MySQLRecordIndex(dsn, database=location.name)

``location`` is a per-test ``tmp_path``; calling ``make_*`` twice with the same location must
reopen the same data (the restart tests rely on it). Backends that do not persist set
``persistent = False``. Optional hooks (``corrupt_blob``) skip their tests when a backend
cannot support them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest

from storage.abc import BlobStoreAPI, CacheAPI, RecordIndexAPI
from storage.cid import cid_for
from storage.exceptions import (
    BlobNotFound,
    DuplicateIdentifier,
    DuplicateRecord,
    IntegrityError,
    RecordNotFound,
)
from storage.models import (
    AnchorBatch,
    AnchorReceipt,
    DocumentMeta,
    KeyUpdate,
    RecordQuery,
    RecordRow,
    StoredKey,
)

MALFORMED_CIDS = [
    "",
    "hello",
    # CIDv0 (dag-pb, base58): not a raw blob address
    "QmWATWQ7fVPP2EFGu71UkfnqhYXDYH566qy47CnJDgvs8u",
    # base32 upper-case multibase
    "BAFKREIFZJUT3TE2NHYEKKLSS27NH3K72YSCO7Y32KOAO5EEI66WOF36N5E",
    # dag-pb codec (bafybei...)
    "bafybeigmix7t42i6jacydtquhet7srwvgpizfg7gjbq7627d35mjomtu64",
    # one character short
    "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5",
    # not base32 ('1' and '8' are outside the alphabet)
    "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n18",
]


# -- blob store ---------------------------------------------------------------------------


class BlobStoreConformance:
    """Behaviour every BlobStoreAPI backend must have."""

    persistent: ClassVar[bool] = True

    def make_blob_store(self, location: Path) -> BlobStoreAPI:
        raise NotImplementedError

    def corrupt_blob(self, store: BlobStoreAPI, cid: str, data: bytes) -> None:
        """Replace the stored bytes of ``cid`` with ``data``, bypassing the API."""
        pytest.skip("backend cannot alter a blob at rest")

    @pytest.fixture
    def location(self, tmp_path: Path) -> Path:
        return tmp_path

    @pytest.fixture
    def blob_store(self, location: Path) -> Iterator[BlobStoreAPI]:
        store = self.make_blob_store(location)
        yield store
        store.close()

    def test_put_returns_the_cid_of_the_bytes(self, blob_store: BlobStoreAPI) -> None:
        data = b"ciphertext \x00\xff" * 10
        cid = blob_store.put(data)
        assert cid == cid_for(data)
        assert cid.startswith("bafkrei")
        assert blob_store.get(cid) == data
        assert blob_store.has(cid)

    def test_put_is_idempotent(self, blob_store: BlobStoreAPI) -> None:
        assert blob_store.put(b"same") == blob_store.put(b"same")
        assert blob_store.get(cid_for(b"same")) == b"same"

    def test_empty_and_large_blobs(self, blob_store: BlobStoreAPI) -> None:
        large = os.urandom(1 << 20)
        for data in (b"", large):
            assert blob_store.get(blob_store.put(data)) == data

    def test_put_many_keeps_order_and_duplicates(self, blob_store: BlobStoreAPI) -> None:
        blobs = [os.urandom(100) for _ in range(20)]
        blobs.append(blobs[3])
        cids = blob_store.put_many(blobs)
        assert cids == [cid_for(b) for b in blobs]
        for cid, data in zip(cids, blobs, strict=True):
            assert blob_store.get(cid) == data

    def test_put_many_empty(self, blob_store: BlobStoreAPI) -> None:
        assert blob_store.put_many([]) == []

    def test_missing_blob(self, blob_store: BlobStoreAPI) -> None:
        cid = cid_for(b"never stored")
        assert not blob_store.has(cid)
        with pytest.raises(BlobNotFound):
            blob_store.get(cid)

    @pytest.mark.parametrize("cid", MALFORMED_CIDS)
    def test_malformed_cid(self, blob_store: BlobStoreAPI, cid: str) -> None:
        with pytest.raises(ValueError):
            blob_store.get(cid)
        with pytest.raises(ValueError):
            blob_store.has(cid)
        with pytest.raises(ValueError):
            blob_store.delete(cid)

    def test_delete(self, blob_store: BlobStoreAPI) -> None:
        cid = blob_store.put(b"to be erased")
        keep = blob_store.put(b"to be kept")
        blob_store.delete(cid)
        assert not blob_store.has(cid)
        with pytest.raises(BlobNotFound):
            blob_store.get(cid)
        assert blob_store.get(keep) == b"to be kept"

    def test_delete_is_idempotent(self, blob_store: BlobStoreAPI) -> None:
        cid = blob_store.put(b"x")
        blob_store.delete(cid)
        blob_store.delete(cid)
        blob_store.delete(cid_for(b"never stored"))

    def test_put_after_delete(self, blob_store: BlobStoreAPI) -> None:
        cid = blob_store.put(b"again")
        blob_store.delete(cid)
        assert blob_store.put(b"again") == cid
        assert blob_store.get(cid) == b"again"

    def test_altered_blob_is_never_returned(self, blob_store: BlobStoreAPI) -> None:
        data = b"original ciphertext"
        cid = blob_store.put(data)
        self.corrupt_blob(blob_store, cid, b"Original ciphertext")
        with pytest.raises(IntegrityError):
            blob_store.get(cid)

    def test_truncated_blob_is_never_returned(self, blob_store: BlobStoreAPI) -> None:
        data = b"original ciphertext"
        cid = blob_store.put(data)
        self.corrupt_blob(blob_store, cid, data[:-1])
        with pytest.raises(IntegrityError):
            blob_store.get(cid)

    def test_concurrent_puts(self, blob_store: BlobStoreAPI) -> None:
        blobs = [os.urandom(64) for _ in range(40)]
        errors: list[BaseException] = []

        def worker(chunk: list[bytes]) -> None:
            try:
                blob_store.put_many(chunk)
                for data in chunk:
                    blob_store.put(data)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        # Overlapping chunks: the same blob is written by two threads at once.
        threads = [
            threading.Thread(target=worker, args=(blobs[i : i + 20],)) for i in range(0, 40, 10)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for data in blobs:
            assert blob_store.get(cid_for(data)) == data

    def test_restart_persistence(self, location: Path) -> None:
        if not self.persistent:
            pytest.skip("backend does not persist")
        store = self.make_blob_store(location)
        cids = [*store.put_many([b"one", b"two"]), store.put(b"three")]
        store.close()
        reopened = self.make_blob_store(location)
        try:
            assert [reopened.get(c) for c in cids] == [b"one", b"two", b"three"]
        finally:
            reopened.close()


# -- record index -------------------------------------------------------------------------

PATIENT_A = "0x" + "aA" * 20
PATIENT_B = "0x" + "bB" * 20
HOSPITAL_1 = "0x" + "11" * 20
HOSPITAL_2 = "0x" + "22" * 20


def make_row(
    n: int,
    *,
    patient: str = PATIENT_A,
    creator: str = HOSPITAL_1,
    category: str = "lab",
    created_at: int | None = None,
    previous_id: bytes | None = None,
) -> RecordRow:
    """A distinct, valid row; ``n`` picks its id and (by default) its creation time."""
    record_id = n.to_bytes(4, "big") * 8
    return RecordRow(
        record_id=record_id,
        patient=patient,
        category=category,
        content_type="application/fhir+json",
        cid=cid_for(record_id),
        content_hash=bytes(reversed(record_id)),
        size=100 + n,
        wrapped_key=b"\x01" * 40,
        kek_version=1,
        creator=creator,
        created_at=1_700_000_000 + n if created_at is None else created_at,
        previous_id=previous_id,
    )


def make_batch(batch_id: int, count: int) -> AnchorBatch:
    return AnchorBatch(
        batch_id=batch_id,
        root=bytes([batch_id]) * 32,
        tx_hash=bytes([0xF0 + batch_id]) * 32,
        block_number=100 + batch_id,
        hospital=HOSPITAL_1,
        count=count,
        anchored_at=1_700_001_000 + batch_id,
    )


def make_receipts(
    rows: list[RecordRow], batch: AnchorBatch | None = None
) -> dict[bytes, AnchorReceipt]:
    return {
        row.record_id: AnchorReceipt(
            record_id=row.record_id,
            leaf=bytes([i + 1]) * 32,
            proof=[bytes([0xA0 + j]) * 32 for j in range(i % 3)],
            batch=batch,
        )
        for i, row in enumerate(rows)
    }


class RecordIndexConformance:
    """Behaviour every RecordIndexAPI backend must have."""

    persistent: ClassVar[bool] = True

    def make_record_index(self, location: Path) -> RecordIndexAPI:
        raise NotImplementedError

    @pytest.fixture
    def location(self, tmp_path: Path) -> Path:
        return tmp_path

    @pytest.fixture
    def index(self, location: Path) -> Iterator[RecordIndexAPI]:
        index = self.make_record_index(location)
        yield index
        index.close()

    def test_add_and_get(self, index: RecordIndexAPI) -> None:
        first = make_row(1)
        second = make_row(2, previous_id=first.record_id)
        index.add_records([first, second])
        assert index.get_record(first.record_id) == first
        assert index.get_record(second.record_id) == second

    def test_add_nothing(self, index: RecordIndexAPI) -> None:
        index.add_records([])
        assert index.count_pending_anchors() == 0

    def test_unknown_record(self, index: RecordIndexAPI) -> None:
        with pytest.raises(RecordNotFound):
            index.get_record(b"\x00" * 32)
        with pytest.raises(RecordNotFound):
            index.get_receipt(b"\x00" * 32)

    def test_duplicate_writes_nothing(self, index: RecordIndexAPI) -> None:
        index.add_records([make_row(1)])
        with pytest.raises(DuplicateRecord):
            index.add_records([make_row(2), make_row(1)])
        with pytest.raises(RecordNotFound):
            index.get_record(make_row(2).record_id)
        assert index.count_pending_anchors() == 1
        assert index.list_records() == [make_row(1)]

    # -- document metadata and queries (hospital standards) ----------------------------------

    def test_document_metadata_round_trips(self, index: RecordIndexAPI) -> None:
        doc = DocumentMeta(
            source="fhir",
            type_system="http://loinc.org",
            type_code="11502-2",
            type_display="Laboratory report",
            title="CBC — Größe ✓",
            clinical_time=-86_400,  # before 1970 is a valid clinical date
            identifier="urn:oid:1.2.3|A-1",
            attributes={"dicom.study_uid": "1.2.840.1", "hl7.control_id": "MSG1"},
        )
        with_doc = replace(make_row(1), document=doc)
        index.add_records([with_doc, make_row(2)])
        assert index.get_record(with_doc.record_id) == with_doc
        assert index.get_record(make_row(2).record_id).document is None
        assert index.list_records() == [make_row(2), with_doc]
        assert index.find_records(RecordQuery(identifier="urn:oid:1.2.3|A-1")) == [with_doc]

    def test_duplicate_identifier_writes_nothing(self, index: RecordIndexAPI) -> None:
        doc = DocumentMeta(identifier="sys|1")
        index.add_records([replace(make_row(1), document=doc)])
        with pytest.raises(DuplicateIdentifier):
            index.add_records([make_row(2), replace(make_row(3), document=doc)])
        with pytest.raises(RecordNotFound):
            index.get_record(make_row(2).record_id)
        assert index.count_pending_anchors() == 1
        assert index.count_records(RecordQuery()) == 1

    def test_bad_document_writes_nothing(self, index: RecordIndexAPI) -> None:
        for doc in (
            DocumentMeta(attributes={"Not Lower": "x"}),
            DocumentMeta(attributes={"a": "x" * 256}),
            DocumentMeta(type_system="http://loinc.org"),  # a system without a code
            DocumentMeta(title=""),
            DocumentMeta(source=""),
        ):
            with pytest.raises(ValueError):
                index.add_records([make_row(1), replace(make_row(2), document=doc)])
        assert index.count_records(RecordQuery()) == 0

    def test_find_filters_and_counts(self, index: RecordIndexAPI) -> None:
        def doc(code: str, when: int | None, **attrs: str) -> DocumentMeta:
            return DocumentMeta(
                source="dicom" if attrs else "fhir",
                type_system="http://loinc.org",
                type_code=code,
                clinical_time=when,
                attributes=attrs,
            )

        a = replace(make_row(1), document=doc("11502-2", 500, **{"dicom.modality": "CT"}))
        b = replace(make_row(2, category="imaging"), document=doc("18748-4", 100))
        c = make_row(3, patient=PATIENT_B)  # no metadata: its time is created_at
        d = replace(make_row(4, previous_id=a.record_id), document=doc("11502-2", 900))
        index.add_records([a, b, c, d])

        def ids(**kw: object) -> list[bytes]:
            return [r.record_id for r in index.find_records(RecordQuery(**kw))]  # type: ignore[arg-type]

        # Newest first by clinical time where there is one (c's is its created_at).
        assert ids() == [c.record_id, d.record_id, a.record_id, b.record_id]
        assert ids(newest_first=False) == [b.record_id, a.record_id, d.record_id, c.record_id]
        assert ids(patient=PATIENT_A) == [d.record_id, a.record_id, b.record_id]
        assert ids(category="imaging") == [b.record_id]
        assert ids(type_code="11502-2") == [d.record_id, a.record_id]
        assert ids(type_system="http://loinc.org", type_code="18748-4") == [b.record_id]
        assert ids(type_system="http://snomed.info/sct", type_code="18748-4") == []
        assert ids(since=100, until=900) == [a.record_id, b.record_id]
        assert ids(status="superseded") == [a.record_id]
        assert a.record_id not in ids(status="current")
        assert ids(previous_id=a.record_id) == [d.record_id]
        assert ids(attributes={"dicom.modality": "CT"}) == [a.record_id]
        assert ids(attributes={"dicom.modality": "CT", "dicom.study_uid": "x"}) == []
        assert ids(source="dicom") == [a.record_id]
        assert ids(limit=2, offset=1) == [d.record_id, a.record_id]
        assert index.count_records(RecordQuery(patient=PATIENT_A, limit=1)) == 3
        assert index.count_records(RecordQuery(status="current")) == 3
        with pytest.raises(ValueError):
            index.find_records(RecordQuery(limit=-1))
        with pytest.raises(ValueError):
            index.find_records(RecordQuery(type_system="http://loinc.org"))

    def test_duplicate_within_a_batch_writes_nothing(self, index: RecordIndexAPI) -> None:
        with pytest.raises(DuplicateRecord):
            index.add_records([make_row(1), make_row(2), make_row(1)])
        assert index.list_records() == []
        assert index.count_pending_anchors() == 0

    def test_list_filters_newest_first(self, index: RecordIndexAPI) -> None:
        rows = [
            make_row(1, patient=PATIENT_A, creator=HOSPITAL_1, category="lab"),
            make_row(2, patient=PATIENT_B, creator=HOSPITAL_1, category="imaging"),
            make_row(3, patient=PATIENT_A, creator=HOSPITAL_2, category="imaging"),
            make_row(4, patient=PATIENT_A, creator=HOSPITAL_1, category="imaging"),
            make_row(5, patient=PATIENT_B, creator=HOSPITAL_2, category="lab"),
        ]
        index.add_records(rows[:3])
        index.add_records(rows[3:])
        number = {row.record_id: n for n, row in enumerate(rows, start=1)}

        def listed(
            patient: str | None = None, creator: str | None = None, category: str | None = None
        ) -> list[int]:
            found = index.list_records(patient=patient, creator=creator, category=category)
            return [number[row.record_id] for row in found]

        assert listed() == [5, 4, 3, 2, 1]
        assert listed(patient=PATIENT_A) == [4, 3, 1]
        assert listed(creator=HOSPITAL_2) == [5, 3]
        assert listed(category="imaging") == [4, 3, 2]
        assert listed(patient=PATIENT_A, category="imaging") == [4, 3]
        assert listed(patient=PATIENT_B, creator=HOSPITAL_2, category="lab") == [5]
        assert listed(creator=HOSPITAL_1, category="lab") == [1]
        assert listed(patient="0x" + "cC" * 20) == []
        # A value is data, never SQL.
        assert listed(patient="x' OR '1'='1") == []

    def test_list_orders_by_creation_time_not_insertion(self, index: RecordIndexAPI) -> None:
        late, early = make_row(1, created_at=2_000), make_row(2, created_at=1_000)
        index.add_records([late])
        index.add_records([early])
        assert index.list_records() == [late, early]

    def test_list_pagination(self, index: RecordIndexAPI) -> None:
        rows = [make_row(n) for n in range(10)]
        index.add_records(rows)
        newest_first = list(reversed(rows))
        assert index.list_records(limit=3) == newest_first[:3]
        assert index.list_records(limit=3, offset=3) == newest_first[3:6]
        assert index.list_records(limit=100, offset=8) == newest_first[8:]
        assert index.list_records(limit=5, offset=20) == []
        assert index.list_records(limit=0) == []

    def test_outbox_oldest_first(self, index: RecordIndexAPI) -> None:
        rows = [make_row(n) for n in range(5)]
        index.add_records(rows[:2])
        index.add_records(rows[2:])
        assert index.count_pending_anchors() == 5
        assert index.pending_anchors(3) == rows[:3]
        assert index.pending_anchors(100) == rows
        assert index.pending_anchors(0) == []

    def test_mark_anchored(self, index: RecordIndexAPI) -> None:
        rows = [make_row(n) for n in range(5)]
        index.add_records(rows)
        batch = make_batch(1, 3)
        receipts = make_receipts(rows[:3])
        index.mark_anchored(batch, receipts)

        assert index.count_pending_anchors() == 2
        assert index.pending_anchors(10) == rows[3:]
        assert index.get_batch(1) == batch
        for row in rows[:3]:
            receipt = index.get_receipt(row.record_id)
            expected = receipts[row.record_id]
            assert receipt is not None
            assert receipt.record_id == row.record_id
            assert receipt.leaf == expected.leaf
            assert receipt.proof == expected.proof  # including the empty proof
            assert receipt.batch == batch
        assert index.get_receipt(rows[3].record_id) is None

    def test_anchoring_in_two_batches(self, index: RecordIndexAPI) -> None:
        rows = [make_row(n) for n in range(4)]
        index.add_records(rows)
        index.mark_anchored(make_batch(1, 2), make_receipts(rows[:2]))
        index.mark_anchored(make_batch(2, 2), make_receipts(rows[2:]))
        assert index.count_pending_anchors() == 0
        receipt = index.get_receipt(rows[3].record_id)
        assert receipt is not None and receipt.batch == make_batch(2, 2)

    def test_mark_anchored_unknown_record_writes_nothing(self, index: RecordIndexAPI) -> None:
        rows = [make_row(1), make_row(2)]
        index.add_records(rows[:1])
        with pytest.raises(RecordNotFound):
            index.mark_anchored(make_batch(1, 2), make_receipts(rows))
        assert index.count_pending_anchors() == 1
        assert index.get_receipt(rows[0].record_id) is None
        with pytest.raises(RecordNotFound):
            index.get_batch(1)

    def test_unknown_batch(self, index: RecordIndexAPI) -> None:
        with pytest.raises(RecordNotFound):
            index.get_batch(42)

    def test_restart_persistence(self, location: Path) -> None:
        if not self.persistent:
            pytest.skip("backend does not persist")
        rows = [make_row(n) for n in range(3)]
        index = self.make_record_index(location)
        index.add_records(rows)
        index.mark_anchored(make_batch(7, 1), make_receipts(rows[:1]))
        index.close()

        reopened = self.make_record_index(location)
        try:
            assert reopened.list_records() == list(reversed(rows))
            assert reopened.pending_anchors(10) == rows[1:]
            receipt = reopened.get_receipt(rows[0].record_id)
            assert receipt is not None and receipt.batch == make_batch(7, 1)
            assert reopened.get_batch(7) == make_batch(7, 1)
        finally:
            reopened.close()

    def test_concurrent_writers_and_readers(self, index: RecordIndexAPI) -> None:
        writers, batches, per_batch = 4, 10, 5
        errors: list[BaseException] = []
        done = threading.Event()

        def write(w: int) -> None:
            try:
                for b in range(batches):
                    base = (w * batches + b) * per_batch
                    index.add_records([make_row(base + i) for i in range(per_batch)])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def read() -> None:
            try:
                while not done.is_set():
                    for row in index.list_records(limit=20):
                        assert index.get_record(row.record_id) == row
                    index.pending_anchors(10)
                    index.count_pending_anchors()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        readers = [threading.Thread(target=read) for _ in range(3)]
        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for t in readers + threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        for t in readers:
            t.join()
        assert errors == []
        total = writers * batches * per_batch
        assert index.count_pending_anchors() == total
        assert len(index.list_records(limit=total + 1)) == total

    # -- wrapped keys (KEK rotation) ----------------------------------------------------

    def test_kek_usage_and_keys_by_version(self, index: RecordIndexAPI) -> None:
        assert index.kek_usage() == {}
        rows = [replace(make_row(n), kek_version=1 + n % 2) for n in range(5)]
        index.add_records(rows)
        assert index.kek_usage() == {1: 3, 2: 2}
        got = index.wrapped_keys_with(1, 10)
        assert got == [(r.record_id, StoredKey(1, r.wrapped_key)) for r in rows[0::2]]
        assert index.wrapped_keys_with(1, 2) == got[:2]
        assert index.wrapped_keys_with(1, 0) == []
        assert index.wrapped_keys_with(9, 10) == []
        with pytest.raises(ValueError):
            index.wrapped_keys_with(1, -1)

    def test_replace_wrapped_keys(self, index: RecordIndexAPI) -> None:
        rows = [make_row(n) for n in range(3)]
        index.add_records(rows)
        updates = [KeyUpdate(r.record_id, 1, 2, bytes([n]) * 40) for n, r in enumerate(rows[:2])]
        assert index.replace_wrapped_keys(updates) == 2
        assert index.kek_usage() == {1: 1, 2: 2}
        for n, row in enumerate(rows[:2]):
            stored = index.get_record(row.record_id)
            assert stored == replace(row, kek_version=2, wrapped_key=bytes([n]) * 40)
        assert index.get_record(rows[2].record_id) == rows[2]
        assert index.replace_wrapped_keys([]) == 0

    def test_replace_wrapped_keys_is_compare_and_set(self, index: RecordIndexAPI) -> None:
        row = make_row(1)
        index.add_records([row])
        assert index.replace_wrapped_keys([KeyUpdate(row.record_id, 1, 3, b"\x03" * 40)]) == 1
        # A re-wrapper that read the row at v1 before that swap comes too late: nothing moves.
        stale = KeyUpdate(row.record_id, 1, 2, b"\x02" * 40)
        assert index.replace_wrapped_keys([stale]) == 0
        assert index.get_record(row.record_id).wrapped_key == b"\x03" * 40
        assert index.kek_usage() == {3: 1}
        unknown = KeyUpdate(make_row(99).record_id, 3, 4, b"\x04" * 40)
        assert index.replace_wrapped_keys([unknown]) == 0

    def test_concurrent_replacers_swap_each_key_once(self, index: RecordIndexAPI) -> None:
        rows = [make_row(n) for n in range(40)]
        index.add_records(rows)
        changed: list[int] = []
        errors: list[BaseException] = []

        def rewrap(w: int) -> None:
            try:
                updates = [KeyUpdate(r.record_id, 1, 2, bytes([w + 1]) * 40) for r in rows]
                changed.append(index.replace_wrapped_keys(updates))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=rewrap, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sum(changed) == len(rows)  # each record moved exactly once
        assert index.kek_usage() == {2: len(rows)}

    def test_replace_rejects_bad_updates_and_writes_nothing(self, index: RecordIndexAPI) -> None:
        row = make_row(1)
        index.add_records([row])
        good = KeyUpdate(row.record_id, 1, 2, b"\x02" * 40)
        for bad in (
            KeyUpdate(row.record_id, 1, 1, b"\x02" * 40),  # same version
            KeyUpdate(b"short", 1, 2, b"\x02" * 40),
            KeyUpdate(row.record_id, 1, 2, b""),
        ):
            with pytest.raises(ValueError):
                index.replace_wrapped_keys([good, bad])
        assert index.get_record(row.record_id) == row

    # -- erasure (crypto-shredding) ------------------------------------------------------

    def test_mark_erased_shreds_the_key_and_keeps_the_row(self, index: RecordIndexAPI) -> None:
        rows = [make_row(n) for n in range(3)]
        index.add_records(rows)
        reason = b"\x07" * 32
        assert index.mark_erased([rows[0].record_id, rows[2].record_id], 1_700_000_500, reason) == [
            rows[0].record_id,
            rows[2].record_id,
        ]
        gone = index.get_record(rows[0].record_id)
        assert gone.erased and gone.erased_at == 1_700_000_500 and gone.erase_tx is None
        assert gone.wrapped_key == b""  # the data key is unrecoverable
        assert replace(gone, wrapped_key=rows[0].wrapped_key, erased_at=None) == rows[0]
        assert index.get_record(rows[1].record_id) == rows[1]
        assert [r.erased for r in index.list_records()] == [True, False, True]
        # Erased keys are nobody's to re-wrap, and they keep no KEK alive.
        assert index.kek_usage() == {1: 1}
        assert [rid for rid, _ in index.wrapped_keys_with(1, 10)] == [rows[1].record_id]
        late = KeyUpdate(rows[0].record_id, 1, 2, b"\x02" * 40)
        assert index.replace_wrapped_keys([late]) == 0
        assert index.get_record(rows[0].record_id).wrapped_key == b""

    def test_mark_erased_twice_and_unknown(self, index: RecordIndexAPI) -> None:
        rows = [make_row(n) for n in range(2)]
        index.add_records(rows)
        reason = b"\x07" * 32
        assert index.mark_erased([rows[0].record_id], 100, reason) == [rows[0].record_id]
        assert index.mark_erased([rows[0].record_id, rows[1].record_id], 200, reason) == [
            rows[1].record_id
        ]
        assert index.get_record(rows[0].record_id).erased_at == 100  # the first erasure stays
        assert index.mark_erased([], 300, reason) == []
        third = make_row(3)
        index.add_records([third])
        with pytest.raises(RecordNotFound):
            index.mark_erased([third.record_id, make_row(99).record_id], 300, reason)
        assert not index.get_record(third.record_id).erased  # nothing written
        for bad in ((b"short", reason), (third.record_id, b"\x01")):
            with pytest.raises(ValueError):
                index.mark_erased([bad[0]], 300, bad[1])
        assert not index.get_record(third.record_id).erased

    def test_pending_erasures_until_purged_and_tombstoned(self, index: RecordIndexAPI) -> None:
        rows = [make_row(n) for n in range(3)]
        index.add_records(rows)
        assert index.pending_erasures(10) == []
        reason = b"\x07" * 32
        index.mark_erased([rows[1].record_id], 100, reason)
        index.mark_erased([rows[0].record_id], 200, reason)
        pending = index.pending_erasures(10)
        assert [(p.record_id, p.cid, p.reason_hash) for p in pending] == [
            (rows[1].record_id, rows[1].cid, reason),
            (rows[0].record_id, rows[0].cid, reason),
        ]
        assert not any(p.blob_purged or p.erase_tx for p in pending)
        assert len(index.pending_erasures(1)) == 1
        index.mark_blobs_purged([rows[1].record_id, rows[2].record_id])  # rows[2]: not erased
        index.mark_tombstoned([rows[0].record_id], b"\xaa" * 32)
        pending = index.pending_erasures(10)
        assert [(p.record_id, p.blob_purged, p.erase_tx) for p in pending] == [
            (rows[1].record_id, True, None),
            (rows[0].record_id, False, b"\xaa" * 32),
        ]
        index.mark_tombstoned([rows[1].record_id, rows[2].record_id], b"\xbb" * 32)
        index.mark_tombstoned([rows[0].record_id], b"\xcc" * 32)  # the first tx stays
        index.mark_blobs_purged([rows[0].record_id])
        assert index.pending_erasures(10) == []
        assert index.get_record(rows[0].record_id).erase_tx == b"\xaa" * 32
        assert index.get_record(rows[2].record_id).erase_tx is None
        with pytest.raises(ValueError):
            index.pending_erasures(-1)


# -- cache --------------------------------------------------------------------------------


class CacheConformance:
    """Behaviour every CacheAPI backend must have (eviction policy is backend-specific)."""

    #: a TTL the backend honours and the time to wait for it to lapse
    short_ttl: ClassVar[float] = 0.05
    ttl_wait: ClassVar[float] = 0.15

    def make_cache(self, location: Path) -> CacheAPI:
        raise NotImplementedError

    @pytest.fixture
    def cache(self, tmp_path: Path) -> Iterator[CacheAPI]:
        cache = self.make_cache(tmp_path)
        yield cache
        cache.close()

    def test_miss_is_none(self, cache: CacheAPI) -> None:
        assert cache.get("absent") is None

    def test_set_get_overwrite(self, cache: CacheAPI) -> None:
        cache.set("k", b"\x00v1")
        assert cache.get("k") == b"\x00v1"
        cache.set("k", b"v2")
        assert cache.get("k") == b"v2"
        cache.set("empty", b"")
        assert cache.get("empty") == b""

    def test_delete(self, cache: CacheAPI) -> None:
        cache.set("k", b"v")
        cache.delete("k")
        assert cache.get("k") is None
        cache.delete("k")
        cache.delete("never set")

    def test_ttl_expires(self, cache: CacheAPI) -> None:
        cache.set("short", b"v", ttl=self.short_ttl)
        cache.set("long", b"v", ttl=60)
        cache.set("forever", b"v")
        assert cache.get("short") == b"v"
        time.sleep(self.ttl_wait)
        assert cache.get("short") is None
        assert cache.get("long") == b"v"
        assert cache.get("forever") == b"v"

    def test_overwrite_resets_ttl(self, cache: CacheAPI) -> None:
        cache.set("k", b"v", ttl=self.short_ttl)
        cache.set("k", b"v2")
        time.sleep(self.ttl_wait)
        assert cache.get("k") == b"v2"
