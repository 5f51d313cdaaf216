"""``trailseal forward``: ship the SIEM feed to a collector, resumably.

The forwarder reads ``GET /v1/stream`` of the service with an API key (scope ``read``),
so it needs no database access and its reads are meta-audited like any client's. Each
batch goes to the target; only once the target has taken it is the batch's
``next_cursor`` written to the state file (temp file, fsync, rename, fsync of the
folder). A crash therefore sends at most the one batch in flight again, and never skips
one: delivery is at least once, in seq order.

Targets, each checked by :mod:`trailseal.netguard` on every connect:

- ``syslog://host[:514]`` or ``syslog+tcp://``: RFC 5424 lines over TCP with RFC 6587
  octet counting, one connection per batch. The batch counts as taken when the collector,
  after the forwarder has closed its side, closes the connection too — proof that it read
  every byte.
- ``syslog+udp://host[:514]``: one datagram per line (RFC 5426). UDP has no
  acknowledgement: a datagram lost on the way is lost.
- ``https://...`` (or ``http://``): one POST per batch of ``{"format", "events"}`` JSON;
  any 2xx is taken. Redirects are never followed.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx

from trailseal import netguard
from trailseal.errors import ConfigurationError, TrailsealError

FeedFormat = Literal["ocsf", "syslog"]
STATE_VERSION = 1
CURSOR_HEADER = "Trailseal-Next-Cursor"
SYSLOG_PORT = 514
MAX_DATAGRAM = 65_000
BACKOFF_BASE, BACKOFF_CAP = 1.0, 60.0


class ForwardError(TrailsealError):
    """A batch was not fetched or not delivered; trying again later may work."""


class FatalForwardError(TrailsealError):
    """Trying again will not help: a refused key or cursor, a refused target."""


# --- state ---------------------------------------------------------------------------


@dataclass
class State:
    """The durable cursor: where the next batch starts, for one source."""

    path: Path
    source: str
    cursor: str | None = None

    @classmethod
    def load(cls, path: Path, source: str) -> State:
        """The state in ``path`` (a fresh one if the file does not exist); refuses a file
        written for another source."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path, source)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the state file {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ConfigurationError(f"{path} is not a trailseal forward state file")
        if data.get("source") != source:
            raise ConfigurationError(
                f"{path} holds the position in {data.get('source')!r}, not {source!r}; "
                "use another state file"
            )
        cursor = data.get("cursor")
        return cls(path, source, cursor if isinstance(cursor, str) else None)

    def save(self, cursor: str) -> None:
        """Make ``cursor`` the durable position: written aside, synced, renamed."""
        text = json.dumps({"version": STATE_VERSION, "source": self.source, "cursor": cursor})
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        with open(partial, "w") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        self.cursor = cursor


# --- the feed ------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """One answer of the feed: OCSF objects or syslog lines, and the cursor after them."""

    items: list[Any]
    next_cursor: str


class Feed:
    """``GET {url}/v1/stream`` with a bearer token."""

    def __init__(self, url: str, token: str, fmt: FeedFormat, limit: int,
                 *, timeout: float = 30.0) -> None:
        self.endpoint = url.rstrip("/") + "/v1/stream"
        self.fmt, self.limit = fmt, limit
        self.http = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {token}"})

    def fetch(self, cursor: str | None) -> Batch:
        """The next batch after ``cursor``."""
        params: dict[str, Any] = {"format": self.fmt, "limit": self.limit}
        if cursor:
            params["cursor"] = cursor
        try:
            response = self.http.get(self.endpoint, params=params)
        except httpx.HTTPError as exc:
            raise ForwardError(f"cannot reach {self.endpoint}: {exc}") from None
        if response.status_code in (401, 403, 422):
            raise FatalForwardError(f"the service refused the feed request "
                                    f"({response.status_code}): {_detail(response)}")
        if response.status_code != 200:
            raise ForwardError(f"the service answered {response.status_code}: "
                               f"{_detail(response)}")
        try:
            if self.fmt == "syslog":
                lines = response.text.split("\n")
                return Batch([line for line in lines if line], response.headers[CURSOR_HEADER])
            body = response.json()
            return Batch(list(body["events"]), str(body["next_cursor"]))
        except (ValueError, KeyError, TypeError):
            raise ForwardError(f"{self.endpoint} answered something that is not the feed "
                               f"({response.headers.get('content-type', 'no type')})") from None

    def close(self) -> None:
        self.http.close()


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or response.reason_phrase)
    return response.reason_phrase


# --- targets -------------------------------------------------------------------------


class Target(Protocol):
    """Where batches go. ``send`` returns once the batch is taken, or raises."""

    def check(self) -> None:
        """Resolve and check the target now (so a refused one fails at start)."""

    def send(self, items: list[Any]) -> None:
        """Deliver one batch."""

    def close(self) -> None:
        """Release what the target holds."""


@dataclass
class _Address:
    host: str
    port: int
    allow_private: bool

    def endpoints(self, kind: socket.SocketKind) -> list[netguard.Endpoint]:
        try:
            return netguard.resolve(self.host, self.port, allow_private=self.allow_private,
                                    kind=kind)
        except netguard.TargetRefused as exc:
            raise FatalForwardError(str(exc)) from None
        except netguard.TargetUnresolved as exc:
            raise ForwardError(str(exc)) from None


class SyslogTcp(_Address):
    """RFC 5424 over TCP, RFC 6587 octet-counting frames, one connection per batch."""

    timeout = 30.0

    def check(self) -> None:
        self.endpoints(socket.SOCK_STREAM)

    def send(self, items: list[Any]) -> None:
        frames = b"".join(
            b"%d %s" % (len(data), data) for data in (str(line).encode() for line in items)
        )
        endpoints = self.endpoints(socket.SOCK_STREAM)
        try:
            with netguard.connect(endpoints, kind=socket.SOCK_STREAM,
                                  timeout=self.timeout) as sock:
                sock.sendall(frames)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(4096):  # the collector closes once it has read it all
                    pass
        except OSError as exc:
            raise ForwardError(f"syslog {self.host}:{self.port}: {exc}") from None

    def close(self) -> None:
        return None


class SyslogUdp(_Address):
    """RFC 5424 over UDP (RFC 5426): one datagram per line, no acknowledgement."""

    def check(self) -> None:
        self.endpoints(socket.SOCK_DGRAM)

    def send(self, items: list[Any]) -> None:
        endpoints = self.endpoints(socket.SOCK_DGRAM)
        try:
            with netguard.connect(endpoints, kind=socket.SOCK_DGRAM, timeout=10) as sock:
                for line in items:
                    data = str(line).encode()
                    if len(data) > MAX_DATAGRAM:  # RFC 5426 §3.2 lets a sender truncate
                        data = data[:MAX_DATAGRAM].decode(errors="ignore").encode()
                    sock.send(data)
        except OSError as exc:
            raise ForwardError(f"syslog over UDP {self.host}:{self.port}: {exc}") from None

    def close(self) -> None:
        return None


class HttpTarget(_Address):
    """POSTs JSON batches; connects only to the checked addresses of the host."""

    def __init__(self, url: str, fmt: FeedFormat, *, allow_private: bool,
                 headers: dict[str, str] | None = None, timeout: float = 30.0) -> None:
        self.url = httpx.URL(url)
        super().__init__(self.url.host, self.url.port or (443 if self.url.scheme == "https"
                                                          else 80), allow_private)
        self.fmt = fmt
        self.headers = {**(headers or {}), "Content-Type": "application/json",
                        "Host": self.url.netloc.decode("ascii")}
        self.http = httpx.Client(timeout=timeout, follow_redirects=False)

    def check(self) -> None:
        self.endpoints(socket.SOCK_STREAM)

    def send(self, items: list[Any]) -> None:
        body = json.dumps({"format": self.fmt, "events": items}, ensure_ascii=False).encode()
        # The request goes to a checked address, never to a fresh lookup of the name;
        # TLS still checks the certificate against the name (SNI).
        extensions = {"sni_hostname": self.host} if self.url.scheme == "https" else {}
        failure = ""
        for endpoint in self.endpoints(socket.SOCK_STREAM):
            pinned = self.url.copy_with(host=str(endpoint.address))
            try:
                response = self.http.post(pinned, content=body, headers=self.headers,
                                          extensions=extensions)
            except httpx.ConnectError as exc:
                failure = str(exc)
                continue
            except httpx.HTTPError as exc:
                raise ForwardError(f"{self.url}: {exc}") from None
            if 200 <= response.status_code < 300:
                return
            if response.is_redirect:
                raise ForwardError(
                    f"{self.url} answered {response.status_code} to "
                    f"{response.headers.get('location', '?')}; redirects are not followed"
                )
            raise ForwardError(f"{self.url} answered {response.status_code}")
        raise ForwardError(f"cannot connect to {self.url}: {failure}")

    def close(self) -> None:
        self.http.close()


def target_for(
    url: str, fmt: FeedFormat, *, allow_private: bool, headers: dict[str, str] | None = None
) -> Target:
    """The target named by ``url`` (``syslog://``, ``syslog+tcp://``, ``syslog+udp://``,
    ``https://``, ``http://``)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise ConfigurationError(f"{url} names no host")
        return HttpTarget(url, fmt, allow_private=allow_private, headers=headers)
    if scheme in ("syslog", "syslog+tcp", "syslog+udp"):
        if fmt != "syslog":
            raise ConfigurationError("a syslog target takes --format syslog")
        if not parts.hostname:
            raise ConfigurationError(f"{url} names no host")
        try:
            port = parts.port or SYSLOG_PORT
        except ValueError:
            raise ConfigurationError(f"{url} has an invalid port") from None
        kind = SyslogUdp if scheme == "syslog+udp" else SyslogTcp
        return kind(parts.hostname, port, allow_private)
    raise ConfigurationError(
        f"unknown target {url!r}: use syslog://, syslog+udp://, https:// or http://"
    )


# --- the loop ------------------------------------------------------------------------


@dataclass
class Forwarder:
    """Moves batches from ``feed`` to ``target``, recording progress in ``state``."""

    feed: Feed
    target: Target
    state: State
    report: Callable[[str], None] = lambda message: None
    delivered: int = 0

    def step(self) -> int:
        """Fetch one batch, deliver it, then record its cursor; returns its size."""
        batch = self.feed.fetch(self.state.cursor)
        if batch.items:
            self.target.send(batch.items)
        if batch.next_cursor != self.state.cursor:
            self.state.save(batch.next_cursor)
        self.delivered += len(batch.items)
        return len(batch.items)

    def drain(self, stop: threading.Event) -> None:
        """Deliver batches until one is short (the end of the log) or ``stop`` is set."""
        while not stop.is_set() and self.step() >= self.feed.limit:
            pass

    def run(self, stop: threading.Event, interval: float) -> None:
        """Drain, wait ``interval``, and again, until ``stop``; back off on failures.
        Fatal errors end it."""
        failures = 0
        while not stop.is_set():
            try:
                self.drain(stop)
                failures = 0
                stop.wait(interval)
            except ForwardError as exc:
                failures += 1
                # Full jitter, so forwarders that failed together do not retry together.
                delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**failures))  # noqa: S311
                self.report(f"{exc}; trying again in {delay:.1f}s")
                stop.wait(delay)
