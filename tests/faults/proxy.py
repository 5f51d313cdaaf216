"""A TCP proxy that misbehaves on demand: it delays, drops (resets) and half-closes the
connections it carries. It sits between trailseal's processes and PostgreSQL (or a
broker) to show that flaky networks cost latency, never events."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading


class FaultyProxy:
    """Listens on 127.0.0.1:``port`` and forwards to ``upstream`` — a (host, port) pair
    or a Unix socket path."""

    def __init__(self, upstream: tuple[str, int] | str) -> None:
        self.upstream = upstream
        self.delay = 0.0
        self.loop = asyncio.new_event_loop()
        self.pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.started.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.started.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if isinstance(self.upstream, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        self.pairs.add(pair)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)
        self.pairs.discard(pair)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def _each(self, action: str) -> None:
        self.loop.call_soon_threadsafe(self._act, action)

    def _act(self, action: str) -> None:
        for client, upstream in list(self.pairs):
            # A half-close hits the client's side only: it sees the stream end while
            # the server still thinks the session is alive.
            for side in (client,) if action == "half-close" else (client, upstream):
                sock = side.get_extra_info("socket")
                if sock is None:
                    continue
                with contextlib.suppress(OSError):
                    if action == "drop" and sock.family != socket.AF_UNIX:
                        # Linger 0: close with a reset, as a dying network would.
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    if action == "half-close":
                        sock.shutdown(socket.SHUT_WR)
                    else:
                        side.transport.abort()

    def drop(self) -> None:
        """Reset every connection now."""
        self._each("drop")

    def half_close(self) -> None:
        """Stop sending on every connection, leaving it open: the peer waits."""
        self._each("half-close")

    def close(self) -> None:
        """Reset every connection and stop. The loop runs on until the resets are done:
        an aborted transport closes its socket on the loop's next turn, and a loop
        stopped before that left the upstream sockets open, so the server kept the
        sessions of killed clients, with their locks (a sequencer's tenant stayed held
        and one run's inbox never drained)."""

        async def shut() -> None:
            self._act("drop")
            self.server.close()
            for _ in range(2):  # the turns on which the aborted sockets are closed
                await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
