"""Read: decide on consent (on-chain) or ownership, log the access, decrypt and verify."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread

from hsm.abc import KeyStoreAPI, WrappedKey
from hsm.envelope import open_sealed
from hsm.exceptions import DecryptionError, UnwrapError
from node.audit.abc import AccessLogQueueAPI
from node.chain.models import AccessEntry
from node.consent.abc import AccessDeciderAPI
from node.consent.typed_data import AccessBasis, category_hash
from node.exceptions import ConsentDenied, Erased
from node.flows.log_accesses import ACCESS_LOG_WORKER
from node.flows.record_binding import row_aad
from node.roles.abc import BackgroundWorkersAPI
from storage.abc import BlobStoreAPI, CacheAPI, RecordIndexAPI
from storage.cid import cid_for
from storage.exceptions import IntegrityError
from storage.models import RecordRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecordContent:
    row: RecordRow
    content: bytes
    basis: AccessBasis


def decide_access(
    row: RecordRow, requester: str, *, access: AccessDeciderAPI, affiliated_hospital: str | None
) -> AccessBasis:
    """The patient always reads their own records; anyone else needs an unexpired on-chain
    consent or break-glass, granted to them or to the hospital they work for."""
    if requester == row.patient:
        return AccessBasis.PATIENT
    cat = category_hash(row.category)
    basis = access.basis(row.patient, requester, row.record_id, cat)
    if basis is AccessBasis.NONE and affiliated_hospital is not None:
        basis = access.basis(row.patient, affiliated_hospital, row.record_id, cat)
    return basis


def check_not_erased(row: RecordRow) -> None:
    """Raise Erased for a crypto-shredded record: its data key is gone, nothing can open it."""
    if row.erased:
        raise Erased(f"record 0x{row.record_id.hex()} was erased; only its anchored hash remains")


def open_record(
    row: RecordRow, *, blobs: BlobStoreAPI, keys: KeyStoreAPI, cache: CacheAPI | None = None
) -> bytes:
    """Fetch (hot cache first), decrypt and check a record: altered bytes raise, they are
    never returned. Raises Erased for an erased record, IntegrityError if the ciphertext,
    its wrapped key or the index row that names them was altered (the row's patient,
    category, content type and previous version are bound to the ciphertext:
    ``node.flows.record_binding``)."""
    check_not_erased(row)
    key = f"blob:{row.cid}"
    blob = cache.get(key) if cache is not None else None
    if blob is None or cid_for(blob) != row.cid:  # the cache is re-checked like any store
        blob = blobs.get(row.cid)  # re-hashes against the CID
        if cache is not None:
            cache.set(key, blob)
    try:
        content = open_sealed(
            blob,
            WrappedKey(row.kek_version, row.wrapped_key),
            lambda version: row_aad(row, version),
            keys,
        )
    except (DecryptionError, UnwrapError, IntegrityError):
        # The record id only: the row's other fields are what may have been rewritten.
        log.warning("record 0x%s does not open with its index entry", row.record_id.hex())
        raise IntegrityError(
            f"record 0x{row.record_id.hex()} does not match its index entry or was altered at rest"
        ) from None
    if hashlib.sha256(content).digest() != row.content_hash:
        raise IntegrityError(f"record 0x{row.record_id.hex()} does not match its content hash")
    return content


def _decide_and_open(
    record_id: bytes,
    requester: str,
    *,
    index: RecordIndexAPI,
    blobs: BlobStoreAPI,
    keys: KeyStoreAPI,
    access: AccessDeciderAPI,
    cache: CacheAPI | None,
    affiliation: Callable[[], str | None],
) -> _Opened:
    """The blocking part of a read: the row, the decision, and the content if granted."""
    row = index.get_record(record_id)
    check_not_erased(row)  # 410 for everyone, before consent: there is nothing left to grant
    # The requester's hospital is looked up only for someone other than the patient.
    affiliated = None if requester == row.patient else affiliation()
    basis = decide_access(row, requester, access=access, affiliated_hospital=affiliated)
    if basis is AccessBasis.NONE:
        return _Opened(row, basis, b"", None)
    # Opened before the access is logged, so that a granted entry names a row that matched
    # its ciphertext. A read that fails (a rewritten row, altered ciphertext, an outage)
    # disclosed nothing: it is logged as a refused attempt, with the basis the row claimed.
    try:
        return _Opened(row, basis, open_record(row, blobs=blobs, keys=keys, cache=cache), None)
    except Exception as err:
        return _Opened(row, basis, b"", err)


@dataclass(frozen=True, slots=True)
class _Opened:
    row: RecordRow
    basis: AccessBasis
    content: bytes
    failure: Exception | None  # what opening a granted record raised

    def entry(self, requester: str) -> AccessEntry:
        granted = self.basis is not AccessBasis.NONE and self.failure is None
        return AccessEntry(self.row.patient, self.row.record_id, requester, granted, self.basis)

    def result(self, requester: str) -> RecordContent:
        """The content, once the access is queued; raises what opening raised, or
        ConsentDenied."""
        if self.failure is not None:
            raise self.failure
        if self.basis is AccessBasis.NONE:
            raise ConsentDenied(
                f"no consent allows {requester} to read record 0x{self.row.record_id.hex()}"
            )
        return RecordContent(self.row, self.content, self.basis)


def read_record(
    record_id: bytes,
    requester: str,
    *,
    index: RecordIndexAPI,
    blobs: BlobStoreAPI,
    keys: KeyStoreAPI,
    access: AccessDeciderAPI,
    access_log: AccessLogQueueAPI,
    cache: CacheAPI | None = None,
    affiliated_hospital: str | None = None,
) -> RecordContent:
    """Decide, open, log the access durably, then return the content. Raises Erased,
    ConsentDenied (logged as a refused attempt), IntegrityError or a backend error (logged
    as refused too: nothing was disclosed), or whatever ``enqueue`` raises (then nothing is
    returned either)."""
    opened = _decide_and_open(
        record_id,
        requester,
        index=index,
        blobs=blobs,
        keys=keys,
        access=access,
        cache=cache,
        affiliation=lambda: affiliated_hospital,
    )
    # Logged durably before any data leaves the node; denied attempts are logged too.
    access_log.enqueue([opened.entry(requester)])
    return opened.result(requester)


async def read_record_async(
    record_id: bytes,
    requester: str,
    *,
    index: RecordIndexAPI,
    blobs: BlobStoreAPI,
    keys: KeyStoreAPI,
    access: AccessDeciderAPI,
    access_log: AccessLogQueueAPI,
    cache: CacheAPI | None = None,
    affiliation: Callable[[], str | None] = lambda: None,
    background: BackgroundWorkersAPI | None = None,
) -> RecordContent:
    """``read_record`` for an ``async def`` route: the blocking part (index, decision,
    fetch, unwrap and decrypt) runs in a worker thread, then the access entry's commit is
    awaited on the event loop (``AccessLogQueueAPI.enqueue_async``), so no thread waits for
    the group commit. The content is returned only after the entry is durable, as with
    ``read_record``. ``affiliation`` (the hospital the requester works for, if any) is
    called in the worker thread, and only for a requester other than the patient."""
    try:
        opened = await anyio.to_thread.run_sync(
            functools.partial(
                _decide_and_open,
                record_id,
                requester,
                index=index,
                blobs=blobs,
                keys=keys,
                access=access,
                cache=cache,
                affiliation=affiliation,
            )
        )
        await access_log.enqueue_async([opened.entry(requester)])
        return opened.result(requester)
    finally:
        if background is not None:  # granted or denied, an access was queued for the chain
            background.queued(ACCESS_LOG_WORKER, 1)
