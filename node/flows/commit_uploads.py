"""Group commit of single uploads: the requests of many concurrent HTTP uploads are stored
in one batch (one blob write, one index transaction)."""

from __future__ import annotations

from collections.abc import Sequence

from hsm.abc import KeyStoreAPI
from node.chain.abc import ChainClientAPI
from node.exceptions import Conflict, InvalidRequest
from node.flows.upload_record import HospitalNamespace, UploadRequest, upload_records
from node.observability.metrics import NULL_METRICS, MetricsAPI
from node.roles.abc import BackgroundWorkersAPI
from storage.abc import BlobStoreAPI, RecordIndexAPI
from storage.exceptions import DuplicateIdentifier
from storage.models import RecordRow

ANCHORER = "anchorer"
_TAKEN = "a record with this document identifier already exists"


class UploadCommitter:
    """The commit step a ``Coalescer`` calls with each batch of upload requests."""

    def __init__(
        self,
        *,
        chain: ChainClientAPI,
        namespace: HospitalNamespace,
        blobs: BlobStoreAPI,
        index: RecordIndexAPI,
        keys: KeyStoreAPI,
        background: BackgroundWorkersAPI,
        metrics: MetricsAPI = NULL_METRICS,
    ) -> None:
        self._metrics = metrics
        self._chain = chain
        self._namespace = namespace
        self._blobs = blobs
        self._index = index
        self._keys = keys
        self._background = background

    def __call__(self, requests: Sequence[UploadRequest]) -> list[RecordRow]:
        """All or nothing (``POST /records/batch``, a FHIR transaction)."""
        try:
            rows = self._store(requests)
        except DuplicateIdentifier:
            raise Conflict(_TAKEN) from None
        self._background.queued(ANCHORER, len(rows))  # a full batch anchors before its interval
        self._metrics.count("emr_records_uploaded_total", len(rows))
        return rows

    def shared(
        self, requests: Sequence[UploadRequest]
    ) -> list[RecordRow | Conflict | InvalidRequest]:
        """A group commit of uploads from different callers: if one of them cannot be
        stored (its document identifier is taken, e.g. a message re-sent while its first
        copy commits, or two callers send the same one), only that one fails."""
        try:
            return list(self(requests))
        except (Conflict, InvalidRequest):
            if len(requests) == 1:
                raise
        rows: list[RecordRow | Conflict | InvalidRequest] = []
        for request in requests:
            try:
                rows += self([request])
            except (Conflict, InvalidRequest) as err:
                rows.append(err)
        return rows

    def _store(self, requests: Sequence[UploadRequest]) -> list[RecordRow]:
        return upload_records(
            requests,
            hospital=self._chain.hospital,
            member_id=self._namespace.member_id(),
            blobs=self._blobs,
            index=self._index,
            keys=self._keys,
        )
