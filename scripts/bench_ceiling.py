"""The ceiling for scripts/bench_http.py: bare FastAPI handlers with the node's route
signatures and nothing behind them (no auth, middleware, storage or chain). Served by uvicorn
the way the node is, with the same number of processes:

    uvicorn bench_ceiling:create_app --factory --app-dir scripts [--workers N]

- ``POST /records``: the upload route's parameters (multipart file, patient, category,
  content_type, previous_id); reads the file, answers 201 with a ``RecordPublic``.
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

from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import Response

from node.api.schemas.common import AddressParam, CategoryParam, Hex32Param, MediaTypeParam
from node.api.schemas.records import RecordPublic

CONTENT_ENV = "EMR_BENCH_CEILING_CONTENT"


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
        return RecordPublic(
            record_id="0x" + secrets.token_hex(32),
            patient=patient,
            category=category,
            content_type=content_type or file.content_type or "application/octet-stream",
            size=len(data),
            cid="bafkreib" + "a" * 52,
            content_hash="0x" + "00" * 32,
            creator=patient,
            created_at=int(time.time()),
            previous_id=previous_id,
            anchored=False,
        )

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
