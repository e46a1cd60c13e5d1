"""Group commit of single uploads: the requests of many concurrent HTTP uploads are stored
in one batch (one blob write, one index transaction)."""

from __future__ import annotations

from collections.abc import Sequence

from hsm.abc import KeyStoreAPI
from node.chain.abc import ChainClientAPI
from node.flows.upload_record import HospitalNamespace, UploadRequest, upload_records
from node.roles.abc import BackgroundWorkersAPI
from storage.abc import BlobStoreAPI, RecordIndexAPI
from storage.models import RecordRow

ANCHORER = "anchorer"


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
    ) -> None:
        self._chain = chain
        self._namespace = namespace
        self._blobs = blobs
        self._index = index
        self._keys = keys
        self._background = background

    def __call__(self, requests: Sequence[UploadRequest]) -> list[RecordRow]:
        rows = upload_records(
            requests,
            hospital=self._chain.hospital,
            member_id=self._namespace.member_id(),
            blobs=self._blobs,
            index=self._index,
            keys=self._keys,
        )
        self._background.queued(ANCHORER, len(rows))  # a full batch anchors before its interval
        return rows
