"""Console sessions: a signed cookie that names a key, never holds it; CSRF tokens.

Signing in with an API token authenticates it once; the cookie then carries the key's
id, its tenant, a per-session CSRF token and an expiry, sealed with an HMAC under a key
derived from the service's secret key (the one that signs cursors, so every API node
accepts the same cookies). The token itself is never stored. Each request re-reads the
key (:func:`trailseal.tenants.live_key`), so revoking a key ends its sessions at once.

Cookies are ``HttpOnly``, ``SameSite=Strict``, scoped to ``/ui`` and ``Secure`` whenever
the request came over HTTPS (by the connection's scheme, or by ``X-Forwarded-Proto`` only
when ``TRAILSEAL_BEHIND_PROXY`` says a proxy sets it).

CSRF: every POST must carry the session's token (form field ``csrf_token`` or header
``X-CSRF-Token``). Signing in has no session yet, so the sign-in form carries a
pre-session token: the HMAC of a random nonce that sits in a cookie of its own, which a
page on another site can neither read nor forge.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import Response

COOKIE = "trailseal_console"
SIGN_IN_COOKIE = "trailseal_console_signin"
# Not a credential: says "this browser has a session" to a request that arrived from
# another site, which SameSite=Strict keeps the session cookie from (see ui.py).
HINT_COOKIE = "trailseal_console_hint"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
PATH = "/ui"
SIGN_IN_SECONDS = 3600
MAX_FORM_BYTES = 16 * 1024
_TAG = 32


@dataclass(frozen=True)
class Session:
    """What a console cookie holds."""

    tenant: str
    key_id: uuid.UUID
    csrf: str
    expires: int  # Unix seconds


def session_key(secret: bytes) -> bytes:
    """The key that seals console cookies, derived from the service's secret key (so a
    cookie can never pass for a cursor, or a cursor for a cookie)."""
    return hmac.new(secret, b"trailseal console session v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(key: bytes, session: Session) -> str:
    """The cookie value of ``session``: its JSON and an HMAC-SHA256 tag, base64url."""
    payload = json.dumps(
        [session.tenant, str(session.key_id), session.csrf, session.expires],
        separators=(",", ":"),
    ).encode()
    return _b64(payload + hmac.new(key, payload, hashlib.sha256).digest())


def unseal(key: bytes, value: str, *, now: float | None = None) -> Session | None:
    """The session in a cookie value; None if it was not sealed with ``key``, is
    malformed, or has expired."""
    try:
        raw = _unb64(value)
        payload, tag = raw[:-_TAG], raw[-_TAG:]
        expected = hmac.new(key, payload, hashlib.sha256).digest()
        if len(raw) <= _TAG or not hmac.compare_digest(tag, expected):
            return None
        tenant, key_id, csrf, expires = json.loads(payload)
        session = Session(str(tenant), uuid.UUID(key_id), str(csrf), int(expires))
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    if session.expires <= (time.time() if now is None else now):
        return None
    return session


def new_session(tenant: str, key_id: uuid.UUID, lifetime_seconds: float) -> Session:
    """A fresh session with a new CSRF token."""
    return Session(tenant, key_id, secrets.token_urlsafe(24), int(time.time() + lifetime_seconds))


def sign_in_token(key: bytes, nonce: str) -> str:
    """The pre-session CSRF token of the sign-in form whose cookie holds ``nonce``."""
    return _b64(hmac.new(key, b"sign-in\x00" + nonce.encode(), hashlib.sha256).digest())


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two tokens; False if either is missing."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


def is_https(request: Request, behind_proxy: bool) -> bool:
    """Whether the browser reached us over HTTPS."""
    if behind_proxy:
        forwarded = request.headers.get("x-forwarded-proto", "")
        if forwarded:
            return forwarded.split(",")[0].strip().lower() == "https"
    return request.url.scheme == "https"


def set_cookie(
    response: Response, name: str, value: str, *, max_age: int, secure: bool,
    same_site: str = "strict",
) -> None:
    response.set_cookie(name, value, max_age=max_age, path=PATH, secure=secure,
                        httponly=True, samesite=same_site)  # type: ignore[arg-type]


def clear_cookie(response: Response, name: str, *, secure: bool) -> None:
    response.delete_cookie(name, path=PATH, secure=secure, httponly=True, samesite="strict")


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the only kind the console's forms
    send), first value per field; at most :data:`MAX_FORM_BYTES`. Read once per request."""
    cached: dict[str, str] | None = getattr(request.state, "console_form", None)
    if cached is not None:
        return cached
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ValueError("form too large")
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                         keep_blank_values=True).items()}
    request.state.console_form = form
    return form
