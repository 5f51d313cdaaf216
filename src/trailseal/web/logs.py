"""Request ids and structured logs.

:class:`RequestIdMiddleware` gives every HTTP request an id: the caller's
``X-Request-ID`` when it is a plain token (letters, digits, ``._:-``, at most 128), else a
new UUIDv7. The id is put back into the request's headers (so the meta-audit records the
same one in ``context.request_id``), returned in the response's ``X-Request-ID``, and set
in a context variable while the request runs, which :class:`JsonFormatter` adds to every
log record. A plain ASGI class, not ``BaseHTTPMiddleware``, so the context variable
reaches the handlers.

With ``TRAILSEAL_LOG_JSON`` set, ``serve`` logs one JSON object per line: ``time``,
``level``, ``logger``, ``message``, ``request_id`` (inside a request), ``exception``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trailseal.ids import uuid7

HEADER = b"x-request-id"
_TOKEN = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "trailseal_request_id", default=None)


class RequestIdMiddleware:
    """Assigns, propagates and returns ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != HEADER]
        given = next((v for k, v in scope["headers"] if k == HEADER), b"")
        rid = given if _TOKEN.match(given) else str(uuid7()).encode()
        scope = {**scope, "headers": [*headers, (HEADER, rid)]}
        token = request_id.set(rid.decode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [
                    *(h for h in message.get("headers", []) if h[0].lower() != HEADER),
                    (HEADER, rid)]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per log record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def json_log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` (also uvicorn's ``log_config``) sending every
    logger, uvicorn's included, through :class:`JsonFormatter` to stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json",
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {name: {"handlers": [], "propagate": True, "level": level}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }
