"""``Server-Timing``: how long the server took to start its answer.

:class:`ServerTimingMiddleware` adds ``Server-Timing: app;dur=<ms>`` to every HTTP
response: the milliseconds from the request's arrival at this middleware (the outermost)
to the start of the response, so a client or a benchmark can tell the server's own time
from the network's. It does not count the body after the start: for a streamed answer,
or the meta-audit's record written just before the last body message, that time is the
client's to see. A plain ASGI class, like the others here.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"server-timing"


class ServerTimingMiddleware:
    """Adds ``Server-Timing: app;dur=<ms>`` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = time.perf_counter()

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - arrived) * 1000
                message = {**message, "headers": [
                    *(h for h in message.get("headers", []) if h[0].lower() != HEADER),
                    (HEADER, f"app;dur={ms:.3f}".encode())]}
            await send(message)

        await self.app(scope, receive, send_with_timing)
