"""The request context: who is acting, from where, in which request.

Events recorded while handling a request carry its ``context`` (ip, user agent, session,
request and correlation ids) and its ``actor``. The context lives in a ``ContextVar``, so
it follows the request through threads and asyncio tasks and never leaks between
concurrent requests; nothing is stored per connection, so it stays correct behind
connection poolers.

The framework middleware (``trailseal.client.middleware``) builds the context with
``build_request_context`` and binds it for the length of the request; jobs and scripts use
``request_context``; code that authenticates calls ``set_actor``.

Decisions worth knowing:

* Client IP: see ``client_ip``. ``X-Forwarded-For`` is read only when the direct peer is a
  trusted proxy, from the right, so a client can never choose its recorded address.
* Request id: an incoming ``X-Request-ID`` is kept when it is 1-128 characters of
  ``[A-Za-z0-9._:-]``, otherwise a fresh one (32 hex digits) is made.
* Correlation id: the trace-id of a valid ``traceparent``, else a sane
  ``X-Correlation-ID``, else the request id.
* Session id: never the session cookie itself, which is a bearer credential and would stay
  readable in an append-only log forever. We keep the first 16 hex digits of its SHA-256:
  enough to group a session's events, or to find them given the cookie, and useless for
  logging in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

from trailseal.model import Actor

logger = logging.getLogger(__name__)

ActorResolver = Callable[[Any], Mapping[str, str] | None]
"""Takes the framework's request object; returns the actor, or None when anonymous."""

_EVENT_CONTEXT_FIELDS = (
    "ip",
    "user_agent",
    "session_id",
    "request_id",
    "correlation_id",
    "service",
    "region",
)
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_MAX_USER_AGENT = 2048  # the event schema's limit; longer values would fail validation
SESSION_ID_LENGTH = 16


@dataclass(frozen=True)
class RequestContext:
    """Where an action comes from, and who performs it."""

    ip: str | None
    user_agent: str | None
    session_id: str | None
    request_id: str | None
    correlation_id: str | None
    actor: dict[str, str] | None
    service: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        # Checked here, once, so a bad actor fails where it is set, not at record time.
        if self.actor is not None:
            object.__setattr__(self, "actor", _valid_actor(self.actor))

    def as_event_context(self) -> dict[str, str]:
        """The event's ``context`` object: the fields that are set, by their schema names."""
        values = ((name, getattr(self, name)) for name in _EVENT_CONTEXT_FIELDS)
        return {name: value for name, value in values if value is not None}


def _valid_actor(actor: Mapping[str, str]) -> dict[str, str]:
    # The schema's own model, so the rules for an actor live in one place.
    checked = Actor.model_validate(dict(actor))
    return checked.model_dump(exclude_none=True)


@dataclass
class _Binding:
    # A mutable cell shared by every copy of the request's contextvars.Context, so an actor
    # set where the context was copied (a sync FastAPI dependency in a worker thread, say)
    # is still seen by the rest of the request.
    context: RequestContext


_binding: ContextVar[_Binding | None] = ContextVar("trailseal_request_context", default=None)


def current() -> RequestContext | None:
    """The context bound for the running request or job, or None outside one."""
    binding = _binding.get()
    return None if binding is None else binding.context


def bind(ctx: RequestContext) -> Token[_Binding | None]:
    """Make ``ctx`` current; pass the returned token to ``reset`` when the request ends."""
    return _binding.set(_Binding(ctx))


def reset(token: Token[_Binding | None]) -> None:
    """Restore the context that was current before the matching ``bind``."""
    _binding.reset(token)


@contextmanager
def request_context(
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    session_id: str | None = None,
    request_id: str | None = None,
    correlation_id: str | None = None,
    actor: Mapping[str, str] | None = None,
    service: str | None = None,
    region: str | None = None,
) -> Iterator[RequestContext]:
    """Bind a context for code outside web requests (jobs, scripts), e.g.
    ``with request_context(actor={"type": "system", "id": "nightly-cleanup"}): ...``."""
    ctx = RequestContext(
        ip=ip,
        user_agent=user_agent,
        session_id=session_id,
        request_id=request_id,
        correlation_id=correlation_id,
        actor=None if actor is None else dict(actor),
        service=service,
        region=region,
    )
    token = bind(ctx)
    try:
        yield ctx
    finally:
        reset(token)


def set_actor(actor: Mapping[str, str]) -> RequestContext:
    """Attach the authenticated actor (``{"type", "id", "name"?}``) to the current context.

    Raises ``LookupError`` when no context is bound: setting one here would outlive the
    request in a reused worker thread. Raises ``ValueError`` for an invalid actor.
    """
    binding = _binding.get()
    if binding is None:
        raise LookupError("no request context is bound; use request_context() outside requests")
    binding.context = dataclasses.replace(binding.context, actor=dict(actor))
    return binding.context


def run_actor_resolver(resolver: ActorResolver | None, request: Any) -> None:
    """Call ``resolver(request)`` and attach its actor; a failing resolver is logged and
    ignored, because auditing must never break the request it describes."""
    if resolver is None:
        return
    try:
        actor = resolver(request)
        if actor is not None:
            set_actor(actor)
    except Exception:
        logger.exception("trailseal actor resolver failed; the request continues without actor")


def parse_traceparent(value: str | None) -> str | None:
    """The trace-id of a valid W3C ``traceparent`` header, or None.

    Hex must be lowercase; version ``ff`` and all-zero trace or parent ids are invalid.
    Version 00 must be exactly 55 characters; a later version is read like 00 when its
    first 55 characters are and what follows starts a new field, as the spec asks.
    """
    if value is None:
        return None
    value = value.strip(" \t")
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, _flags = match.groups()
    rest = value[match.end() :]
    if version == "ff" or (version == "00" and rest) or (rest and not rest.startswith("-")):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id


def sane_id(value: str | None) -> str | None:
    """``value`` if it is 1-128 characters of ``[A-Za-z0-9._:-]``, else None."""
    if value is not None and _SANE_ID.fullmatch(value):
        return value
    return None


def new_request_id() -> str:
    """A fresh request id: a random UUID as 32 hex digits."""
    return uuid.uuid4().hex


def session_fingerprint(session_token: str | None) -> str | None:
    """The stored session id: the first 16 hex digits of the SHA-256 of the session cookie.

    The raw cookie is a credential; this keeps sessions apart without revealing it.
    """
    if not session_token:
        return None
    digest = hashlib.sha256(session_token.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:SESSION_ID_LENGTH]


_Address = IPv4Address | IPv6Address


def _parse_ip(value: str | None) -> _Address | None:
    if not value:
        return None
    try:
        address = ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address):
        # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; zone ids are local
        # to the host and the event schema refuses them.
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id:
            return IPv6Address(address.packed)
    return address


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` entries we believe: addresses or CIDRs, IPv4
    or IPv6, parsed once. A CIDR with host bits set (``10.0.0.5/8``) is refused as a
    likely typo."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        if isinstance(entries, str):  # one address, not the characters of one
            entries = (entries,)
        self.networks = tuple(ip_network(entry.strip()) for entry in entries)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, IPv4Address | IPv6Address):
            return False
        return any(address in network for network in self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self.networks]!r})"


def client_ip(
    peer: str | None,
    forwarded_for: str | None,
    trusted_proxies: Iterable[str] | TrustedProxies,
) -> str | None:
    """The client's address, normalised, or None when it cannot be known.

    An untrusted peer is the client, whatever ``X-Forwarded-For`` says. A trusted peer
    forwarded the request, so we walk ``X-Forwarded-For`` from the right (the entries the
    trusted hops appended), skip trusted addresses, and return the first untrusted one.
    When the walk ends without one — the header is absent or exhausted, or an entry is not
    a bare IP address (``unknown``, a port, garbage) — the answer is the last trusted hop
    reached: the nearest address we can vouch for. Entries left of the stopping point are
    never used, as anyone can write them. A peer that is not an IP address (a Unix socket,
    a test client's placeholder) gives None.
    """
    trusted = (
        trusted_proxies
        if isinstance(trusted_proxies, TrustedProxies)
        else TrustedProxies(trusted_proxies)
    )
    hop = _parse_ip(peer)
    if hop is None:
        return None
    if hop in trusted and forwarded_for:
        for entry in reversed(forwarded_for.split(",")):
            address = _parse_ip(entry)
            if address is None:
                break
            hop = address
            if address not in trusted:
                break
    return str(hop)


def build_request_context(
    header: Callable[[str], str | None],
    *,
    peer: str | None,
    session_token: str | None,
    trusted_proxies: TrustedProxies,
    request_id_header: str = "X-Request-ID",
) -> RequestContext:
    """The context of one incoming request, framework-neutral.

    ``header(name)`` returns a request header (name case-insensitive; repeated headers
    joined with ``,``) or None; ``peer`` is the address of the direct peer;
    ``session_token`` is the raw session cookie, hashed here and not kept.
    """
    request_id = sane_id(header(request_id_header)) or new_request_id()
    correlation_id = (
        parse_traceparent(header("traceparent"))
        or sane_id(header("X-Correlation-ID"))
        or request_id
    )
    user_agent = header("User-Agent") or None
    return RequestContext(
        ip=client_ip(peer, header("X-Forwarded-For"), trusted_proxies),
        user_agent=None if user_agent is None else user_agent[:_MAX_USER_AGENT],
        session_id=session_fingerprint(session_token),
        request_id=request_id,
        correlation_id=correlation_id,
        actor=None,
    )
