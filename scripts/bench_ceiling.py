"""The ceiling for scripts/bench_http.py: bare FastAPI handlers with the node's route
signatures and nothing behind them (no auth, middleware, storage or chain). Served by uvicorn
the way the node is, with the same number of processes:

    uvicorn bench_ceiling:create_app --factory --app-dir scripts [--workers N]

- ``POST /records``: the upload route's parameters (multipart file, patient, category,
  content_type, previous_id); reads the file, answers 201 with a ``RecordPublic``.
- ``POST /records/batch``: the batch route's body (a JSON ``manifest`` part listing
  ``{part, patient, category, content_type}`` and one file part per entry), read with the
  node's form limits; validates the manifest, reads every named file and answers 201 with
  one ``RecordPublic`` per entry.
- ``GET /records/{record_id}/content``: answers the bytes of the file named by
  ``EMR_BENCH_CEILING_CONTENT`` (the record the read scenario fetches), with the node's
  headers.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import Response
from starlette.datastructures import UploadFile as FormFile

from node.api.schemas.common import AddressParam, CategoryParam, Hex32Param, MediaTypeParam
from node.api.schemas.records import BATCH_MANIFEST_PART, BatchManifest, RecordPublic
from node.settings import ApiSettings

CONTENT_ENV = "EMR_BENCH_CEILING_CONTENT"
_API = ApiSettings()  # the node's default limits (batch_max_records, max_json_bytes)


def _record(
    patient: str, category: str, content_type: str, size: int, previous_id: str | None
) -> RecordPublic:
    return RecordPublic(
        record_id="0x" + secrets.token_hex(32),
        patient=patient,
        category=category,
        content_type=content_type,
        size=size,
        cid="bafkreib" + "a" * 52,
        content_hash="0x" + "00" * 32,
        creator=patient,
        created_at=int(time.time()),
        previous_id=previous_id,
        anchored=False,
    )


def create_app() -> FastAPI:
    """One app per uvicorn process (``--factory``): state is built here, not at import."""
    app = FastAPI(title="emr-node bench ceiling")
    content_file = os.environ.get(CONTENT_ENV)
    content = Path(content_file).read_bytes() if content_file else b""
    digest = hashlib.sha256(content).hexdigest()

    @app.post("/records", status_code=201, response_model=RecordPublic)
    def upload(
        file: Annotated[UploadFile, File()],
        patient: Annotated[AddressParam, Form()],
        category: Annotated[CategoryParam, Form()],
        content_type: Annotated[MediaTypeParam | None, Form()] = None,
        previous_id: Annotated[Hex32Param | None, Form()] = None,
    ) -> RecordPublic:
        data = file.file.read()
        media_type = content_type or file.content_type or "application/octet-stream"
        return _record(patient, category, media_type, len(data), previous_id)

    @app.post("/records/batch", status_code=201, response_model=list[RecordPublic])
    async def upload_batch(request: Request) -> list[RecordPublic]:
        form = await request.form(
            max_files=_API.batch_max_records, max_fields=64, max_part_size=_API.max_json_bytes
        )
        try:
            manifest = form.get(BATCH_MANIFEST_PART)
            if manifest is None:
                raise HTTPException(422, "no manifest part")
            raw = await manifest.read() if isinstance(manifest, FormFile) else manifest
            results = []
            for entry in BatchManifest.validate_json(raw):
                file = form.get(entry.part)
                if not isinstance(file, FormFile):
                    raise HTTPException(422, f"no file part {entry.part!r}")
                data = await file.read()
                media_type = entry.content_type or file.content_type or "application/octet-stream"
                results.append(
                    _record(entry.patient, entry.category, media_type, len(data), entry.previous_id)
                )
            return results
        finally:
            await form.close()

    @app.get("/records/{record_id}/content")
    def read_content(record_id: Hex32Param) -> Response:
        return Response(
            content=content,
            media_type="application/octet-stream",
            headers={
                "X-Record-Id": record_id.lower(),
                "X-Access-Basis": "patient",
                "X-Content-SHA256": digest,
            },
        )

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
