"""``/v1/log``: the tenant's log as C2SP tlog-tiles (checkpoint, tiles, entry bundles),
its verifier keys, and RFC 6962 proofs; ``/v1/events/{id}/receipt``.

A tlog-tiles client given ``<base>/v1/log/`` and the bearer token reads the tenant's log,
recomputes the root and checks the checkpoint signature with the key from ``/v1/log/key``.

Every read is meta-audited (``trailseal.web.meta``): proofs and receipts one event per
request; checkpoint, key, tile and entry-bundle reads, which log clients poll, counted
per key and minute.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from trailseal.integrity.tiles import parse_tile_path
from trailseal.reading.tree import (
    b64,
    consistency_plan,
    inclusion_plan,
    latest_checkpoint,
    open_tree,
    receipt,
    verifier_keys,
)
from trailseal.tenants import Principal
from trailseal.web.auth import Reading, reading, require
from trailseal.web.events import find_event
from trailseal.web.meta import PROOF_READ, RECEIPT_READ, note_log_read, note_read
from trailseal.web.problems import Problem

router = APIRouter(prefix="/v1", tags=["log"])

_IMMUTABLE = {"Cache-Control": "private, max-age=31536000, immutable"}
_SHORT = {"Cache-Control": "private, no-cache"}


class InclusionProof(BaseModel):
    index: int
    size: int
    hashes: list[str]


def _no_checkpoint() -> Problem:
    return Problem(404, "not-found", "Not found", "this log has no checkpoint yet")


@router.get("/log/checkpoint", response_class=PlainTextResponse,
            summary="The latest signed checkpoint (C2SP tlog-checkpoint)")
async def checkpoint(request: Request, read: Annotated[Reading, Depends(reading())]) -> Response:
    found = await latest_checkpoint(read.conn, read.tenant)
    note_log_read(request, await read.checked(), "checkpoint")
    if found is None:
        raise _no_checkpoint()
    return PlainTextResponse(found.note, headers=_SHORT)


@router.get("/log/key", response_class=PlainTextResponse,
            summary="The verifier key(s) checkpoints are signed with, one per line")
async def key(request: Request, read: Annotated[Reading, Depends(reading())]) -> Response:
    keys = await verifier_keys(read.conn)
    note_log_read(request, await read.checked(), "key")
    return PlainTextResponse("".join(k + "\n" for k in keys), headers=_SHORT)


@router.get("/log/tile/{path:path}", summary="A C2SP tile or entry bundle",
            responses={200: {"content": {"application/octet-stream": {}}}})
async def tile(
    request: Request, path: str, read: Annotated[Reading, Depends(reading())]
) -> Response:
    """``tile/<L>/<N>[.p/<W>]`` (hashes) or ``tile/entries/<N>[.p/<W>]`` (each event's
    canonical bytes after a big-endian uint16 length)."""
    try:
        ref = parse_tile_path("tile/" + path)
    except ValueError as exc:
        raise Problem(404, "not-found", "Not found", f"no such tile: {exc}") from None
    tree = await open_tree(read.conn, read.tenant, request.app.state.tile_cache)
    note_log_read(request, await read.checked(), "entries" if ref.level is None else "tiles")
    if ref.level is None:
        data = await tree.entries(ref.index, ref.width)
    else:
        data = await tree.tile(ref.level, ref.index, ref.width)
    if data is None:
        raise Problem(404, "not-found", "Not found", "the log has no such tile (yet)")
    return Response(data, media_type="application/octet-stream", headers=_IMMUTABLE)


@router.get("/log/proof/inclusion", response_model=InclusionProof,
            summary="RFC 6962 inclusion proof of leaf `index` in the tree of `size`")
async def inclusion(
    request: Request,
    read: Annotated[Reading, Depends(reading())],
    index: int,
    size: int,
) -> Any:
    plan = inclusion_plan(index, size)
    tree = await open_tree(read.conn, read.tenant, request.app.state.tile_cache, plan=plan)
    note = note_read(request, await read.checked(), PROOF_READ,
                     {"proof": "inclusion", "index": index, "size": size})
    proof = await tree.inclusion_proof(index, size, plan)
    note.count = 1
    return {"index": index, "size": size, "hashes": b64(proof)}


@router.get("/log/proof/consistency",
            summary="RFC 6962 consistency proof from the tree of `from` to that of `to`")
async def consistency(
    request: Request,
    read: Annotated[Reading, Depends(reading())],
    from_: Annotated[int, Query(alias="from")],
    to: int,
) -> Any:
    plan = consistency_plan(from_, to)
    tree = await open_tree(read.conn, read.tenant, request.app.state.tile_cache, plan=plan)
    note = note_read(request, await read.checked(), PROOF_READ,
                     {"proof": "consistency", "from": from_, "to": to})
    proof = await tree.consistency_proof(from_, to, plan)
    note.count = 1
    return {"from": from_, "to": to, "hashes": b64(proof)}


@router.get("/events/{event_id}/receipt",
            summary="An event with its inclusion proof and the checkpoint it verifies against")
async def event_receipt(
    request: Request, event_id: str, who: Annotated[Principal, Depends(require("read"))]
) -> Any:
    note = note_read(request, who, RECEIPT_READ, {"id": event_id}, target=("event", event_id))
    found = await find_event(request, who.tenant, event_id, receipt)
    note.count = 1
    return found
