"""Routes for the plant's documents: import (one file per request), list, show, revisions,
remove, search, and one passage in full. The daemon owns the documents, so an engineer imports
from the box itself or from a laptop on the LAN (with the API key)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import PurePath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from appliance.chat import ChatService
from appliance.config import KnowledgeSettings
from appliance.errors import NotFound, RequestError
from appliance.knowledge import library
from appliance.knowledge.document import ImportRefused
from appliance.knowledge.search import search
from appliance.store.db import storage_error

DOCUMENTS = "/v1/appliance/documents"
_STATUS = {"imported": 201, "revised": 201, "superseded": 201, "unchanged": 200, "failed": 422}


def documents_router(service: ChatService, knowledge: KnowledgeSettings) -> APIRouter:
    router = APIRouter()

    @router.post(DOCUMENTS)
    async def import_document(request: Request, name: str) -> JSONResponse:
        file = PurePath(name.replace("\\", "/")).name
        if not file or len(file) > 255:
            raise RequestError("query parameter 'name' must be the document's file name "
                               "(at most 255 characters)", "send ?name=SOP-PR-012_rev3.docx")
        data = await request.body()
        outcome = await _import(service, file, data, knowledge)
        return JSONResponse(outcome.to_dict(), status_code=_STATUS[outcome.status])

    @router.get(DOCUMENTS)
    async def list_documents() -> dict[str, Any]:
        return {"data": library.list_documents(service.db)}

    @router.get(DOCUMENTS + "/{key:path}/revisions")
    async def document_revisions(key: str) -> dict[str, Any]:
        return {"document": key, "data": library.revisions(service.db, key)}

    @router.get(DOCUMENTS + "/{key:path}")
    async def show_document(key: str) -> dict[str, Any]:
        return library.show_document(service.db, key)

    @router.delete(DOCUMENTS + "/{key:path}")
    async def remove_document(key: str) -> dict[str, Any]:
        if service.writer is None:
            return library.remove_document(service.db, key)
        return await service.writer.run(library.remove_document, key)

    @router.get("/v1/appliance/search")
    async def search_documents(q: str, limit: int = 10) -> dict[str, Any]:
        if not 1 <= limit <= 100:
            raise RequestError("field 'limit' must be between 1 and 100", "ask for fewer results")
        if not q.strip():
            raise RequestError("field 'q' is empty", "type what to look for, e.g. E-104 or 泵")
        hits = search(service.db, q, limit)
        return {"query": q, "data": [hit.citation(n) | {"score": hit.score}
                                     for n, hit in enumerate(hits, 1)]}

    @router.get("/v1/appliance/passages/{passage_id}")
    async def show_passage(passage_id: int) -> dict[str, Any]:
        if not 1 <= passage_id < 2**63:
            raise NotFound(f"passage {passage_id} does not exist", "search again")
        return library.passage(service.db, passage_id)

    return router


async def _import(service: ChatService, file: str, data: bytes,
                  knowledge: KnowledgeSettings) -> library.ImportOutcome:
    from appliance.knowledge.parsers import parse  # PDF and Office libraries load on first use

    try:
        # Parsing runs beside the event loop; storing goes through the one writer thread.
        parsed = await asyncio.to_thread(parse, file, data, locale=knowledge.locale,
                                         max_file_bytes=knowledge.max_file_bytes)
        if service.writer is None:
            return library.store_parsed(service.db, file, data, parsed)
        return await service.writer.run(library.store_parsed, file, data, parsed)
    except ImportRefused as refused:
        return library.ImportOutcome(file, "failed", error=refused.to_dict())
    except sqlite3.Error as error:
        raise storage_error(error, f"the document {file}") from error
