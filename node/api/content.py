"""The consent-checked read of a record's content, shared by every route that serves it
(``GET /records/{id}/content``, FHIR ``Binary`` read, DICOMweb WADO-RS): one definition of
the services the read flow takes and of the hospital a clinician reads for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from node.api.deps import (
    AccessDep,
    AccessLogDep,
    BackgroundDep,
    BlobsDep,
    CacheDep,
    ChainDep,
    DirectoryDep,
    IndexDep,
    KeysDep,
)
from node.flows.read_record import RecordContent, read_record_async


class ContentReader:
    """A route dependency: the services of the read flow (none is an OpenAPI parameter).
    ``read`` runs one wallet's read through ``read_record_async``: consent or break-glass
    decided, the access logged on-chain, the content returned once the entry is durable."""

    def __init__(
        self,
        index: IndexDep,
        blobs: BlobsDep,
        keys: KeysDep,
        access: AccessDep,
        access_log: AccessLogDep,
        cache: CacheDep,
        directory: DirectoryDep,
        chain: ChainDep,
        background: BackgroundDep,
    ) -> None:
        self.index = index
        self.blobs = blobs
        self.keys = keys
        self.access = access
        self.access_log = access_log
        self.cache = cache
        self.directory = directory
        self.chain = chain
        self.background = background

    async def read(self, record_id: bytes, wallet: str) -> RecordContent:
        """``wallet``'s read of one record (async: the blocking part runs in a worker
        thread, the access entry's group commit is awaited on the event loop)."""

        def affiliation() -> str | None:  # the hospital a clinician reads for, if listed here
            return self.chain.hospital if self.directory.clinician(wallet) is not None else None

        return await read_record_async(
            record_id,
            wallet,
            index=self.index,
            blobs=self.blobs,
            keys=self.keys,
            access=self.access,
            access_log=self.access_log,
            cache=self.cache,
            affiliation=affiliation,
            background=self.background,
        )


ContentReaderDep = Annotated[ContentReader, Depends(ContentReader)]
