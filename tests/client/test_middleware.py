"""The request-context middleware for ASGI (FastAPI/Starlette, behind a real uvicorn),
Django (its test client) and Flask (its test client).

Each framework gets a tiny app whose endpoint returns ``current()`` as JSON, and the same
checks: client ip (direct, via a trusted proxy, spoofed from an untrusted peer), user
agent, request id (generated, passed through, echoed), correlation id from traceparent,
hashed session id, actor resolver (result and failure), and an empty context afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
import uvicorn
from django.conf import settings as django_settings

from tests.support import free_port
from trailseal.client.context import current, set_actor
from trailseal.client.middleware.asgi import AuditContextMiddleware as AsgiMiddleware

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
SESSION_TOKEN = "s3cr3t-session-token"
SESSION_ID = hashlib.sha256(SESSION_TOKEN.encode()).hexdigest()[:16]
ANN = {"type": "user", "id": "42", "name": "Ann"}


def _as_json() -> dict[str, Any] | None:
    ctx = current()
    return None if ctx is None else dataclasses.asdict(ctx)


def _test_actor(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The resolver the test apps share: X-Test-User names the user, X-Test-Break fails."""
    if headers.get("X-Test-Break"):
        raise RuntimeError("resolver broke")
    user = headers.get("X-Test-User")
    return None if user is None else {"type": "user", "id": "42", "name": user}


# ASGI: FastAPI behind a real uvicorn ---------------------------------------------------------


def _fastapi_app() -> Any:
    from contextlib import asynccontextmanager

    from fastapi import Depends, FastAPI, Header
    from starlette.responses import JSONResponse, StreamingResponse

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        app.state.started = True
        yield

    app = FastAPI(lifespan=lifespan)
    app.state.started = False

    @app.get("/ctx")
    def ctx() -> Any:
        return _as_json()

    @app.get("/started")
    def is_started() -> bool:
        return bool(app.state.started)

    def sync_login(x_login: str = Header()) -> None:
        # Runs in a worker thread, in a copy of the request's context.
        set_actor({"type": "service", "id": x_login})

    @app.get("/login", dependencies=[Depends(sync_login)])
    async def login() -> Any:
        return _as_json()

    @app.get("/own-header")
    def own_header() -> Any:
        return JSONResponse({}, headers={"X-Request-ID": "set-by-the-app"})

    @app.get("/stream")
    def stream() -> StreamingResponse:
        async def chunks() -> Any:
            for _ in range(3):
                await asyncio.sleep(0.01)
                ctx = current()
                yield f"{None if ctx is None else ctx.request_id}\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    return app


async def _asgi_actor(scope: Any) -> dict[str, str] | None:
    headers = {k.decode("latin-1").title(): v.decode("latin-1") for k, v in scope["headers"]}
    await asyncio.sleep(0)  # an async resolver, as one that looks the user up would be
    return _test_actor(headers)


class _AfterRequest:
    """Outermost layer: records what is bound once the middleware has returned."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.left_behind: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.left_behind.append(current())


@pytest.fixture(scope="module")
def asgi() -> Iterator[tuple[str, _AfterRequest]]:
    inner = _fastapi_app()
    options: dict[str, Any] = {"session_cookie": "session", "actor_resolver": _asgi_actor}
    direct = AsgiMiddleware(inner, **options)
    # uvicorn's peer is always 127.0.0.1: trusted here, as a proxy in front would be.
    proxied = AsgiMiddleware(inner, trusted_proxies=["127.0.0.0/8"], **options)

    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        # Lifespan goes to ``direct``, which passes it through to the FastAPI app.
        if scope["type"] == "http" and scope["path"].startswith("/proxied/"):
            scope = {**scope, "path": scope["path"].removeprefix("/proxied")}
            await proxied(scope, receive, send)
        else:
            await direct(scope, receive, send)

    outer = _AfterRequest(dispatch)
    port = free_port()
    config = uvicorn.Config(
        outer, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", outer
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def asgi_get(asgi: tuple[str, _AfterRequest]) -> Iterator[Any]:
    base, _outer = asgi
    with httpx.Client(base_url=base) as client:

        def get(path: str, *, cookies: dict[str, str] | None = None, **headers: str) -> Any:
            client.cookies.clear()
            for name, value in (cookies or {}).items():
                client.cookies.set(name, value)
            return client.get(path, headers=headers)

        yield get


# Django: its test client, settings configured here --------------------------------------------


class _FakeUser:
    is_authenticated = True

    def __init__(self, pk: int, username: str) -> None:
        self.pk = pk
        self.username = username

    def get_username(self) -> str:
        return self.username


class _Anonymous:
    is_authenticated = False
    pk = None


class _Broken:
    @property
    def is_authenticated(self) -> bool:
        raise RuntimeError("user lookup broke")


def fake_auth_middleware(get_response: Any) -> Any:
    """Stands in for AuthenticationMiddleware, without a database."""

    def middleware(request: Any) -> Any:
        name = request.headers.get("X-Test-User")
        request.user = _Anonymous() if name is None else _FakeUser(42, name)
        if request.headers.get("X-Test-Break"):
            request.user = _Broken()
        return get_response(request)

    return middleware


def django_resolver(request: Any) -> dict[str, str] | None:
    """A resolver given by dotted path."""
    return _test_actor(request.headers)


def django_view(request: Any) -> Any:
    from django.http import JsonResponse

    return JsonResponse({"ctx": _as_json()})


urlpatterns: list[Any] = []


def _django_settings() -> None:
    if django_settings.configured:
        return
    django_settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        DATABASES={},
        MIDDLEWARE=[
            f"{__name__}.fake_auth_middleware",
            "trailseal.client.middleware.django.AuditContextMiddleware",
        ],
        TRAILSEAL_TRUSTED_PROXIES=["10.0.0.0/8", "2001:db8:1::/48"],
    )
    import django
    from django.urls import path

    django.setup()
    urlpatterns.append(path("ctx", django_view))


@pytest.fixture
def django_get() -> Iterator[Any]:
    _django_settings()
    from django.test import Client

    def get(
        *,
        peer: str = "203.0.113.9",
        cookies: dict[str, str] | None = None,
        **headers: str,
    ) -> Any:
        client = Client()  # a fresh handler, so settings changed by a test are read
        for name, value in (cookies or {}).items():
            client.cookies[name] = value
        response = client.get("/ctx", headers=headers, REMOTE_ADDR=peer)
        response.json_ctx = response.json()["ctx"]
        return response

    yield get


# Flask: its test client -------------------------------------------------------------------------


@pytest.fixture
def flask_get() -> Iterator[Any]:
    from flask import Flask

    from trailseal.client.middleware.flask import TrailsealAudit

    app = Flask(__name__)
    TrailsealAudit(
        app,
        trusted_proxies=["10.0.0.0/8", "2001:db8:1::/48"],
        actor_resolver=lambda req: _test_actor(req.headers),
    )

    @app.get("/ctx")
    def ctx() -> Any:
        return {"ctx": _as_json()}

    @app.get("/boom")
    def boom() -> Any:
        raise RuntimeError("view failed")

    client = app.test_client()

    def get(
        *,
        peer: str = "203.0.113.9",
        cookies: dict[str, str] | None = None,
        path: str = "/ctx",
        **headers: str,
    ) -> Any:
        for name, value in (cookies or {}).items():
            client.set_cookie(name, value)
        response = client.get(path, headers=headers, environ_base={"REMOTE_ADDR": peer})
        for name in cookies or {}:
            client.delete_cookie(name)
        if response.is_json:
            response.json_ctx = response.get_json()["ctx"]
        return response

    yield get


# One set of checks, three frameworks --------------------------------------------------------------


def _fetch(framework: str, request: pytest.FixtureRequest, *, proxied: bool, **kw: Any) -> Any:
    """GET the context endpoint; ``proxied`` means the peer is a trusted proxy."""
    if framework == "asgi":
        get = request.getfixturevalue("asgi_get")
        response = get("/proxied/ctx" if proxied else "/ctx", **kw)
        response.json_ctx = response.json()
        return response
    get = request.getfixturevalue(f"{framework}_get")
    return get(peer="10.1.2.3" if proxied else "203.0.113.9", **kw)


def _direct_ip(framework: str) -> str:
    return "127.0.0.1" if framework == "asgi" else "203.0.113.9"


FRAMEWORKS = ["asgi", "django", "flask"]


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _after_request_is_empty(framework: str, request: pytest.FixtureRequest) -> None:
    if framework == "asgi":
        _base, outer = request.getfixturevalue("asgi")
        assert outer.left_behind and all(c is None for c in outer.left_behind)
    # Django's and Flask's test clients run the app on this thread, in this context.
    assert current() is None


def test_direct_client(framework: str, request: pytest.FixtureRequest) -> None:
    response = _fetch(framework, request, proxied=False, **{"User-Agent": "probe/1.0"})
    assert response.status_code == 200
    ctx = response.json_ctx
    assert ctx["ip"] == _direct_ip(framework)
    assert ctx["user_agent"] == "probe/1.0"
    assert ctx["actor"] is None and ctx["session_id"] is None
    # A fresh request id, echoed, and the correlation id falls back to it.
    assert len(ctx["request_id"]) == 32
    assert response.headers["X-Request-ID"] == ctx["request_id"]
    assert ctx["correlation_id"] == ctx["request_id"]
    _after_request_is_empty(framework, request)


def test_request_ids_differ_per_request(framework: str, request: pytest.FixtureRequest) -> None:
    ids = {_fetch(framework, request, proxied=False).json_ctx["request_id"] for _ in range(3)}
    assert len(ids) == 3


def test_spoofed_forwarded_for_from_untrusted_peer_ignored(
    framework: str, request: pytest.FixtureRequest
) -> None:
    response = _fetch(
        framework, request, proxied=False, **{"X-Forwarded-For": "198.51.100.1, 10.0.0.1"}
    )
    assert response.json_ctx["ip"] == _direct_ip(framework)


def test_client_behind_trusted_proxy(framework: str, request: pytest.FixtureRequest) -> None:
    # The leftmost value is the client's own claim; the proxy appended the real address.
    response = _fetch(
        framework, request, proxied=True, **{"X-Forwarded-For": "1.1.1.1, 198.51.100.1"}
    )
    assert response.json_ctx["ip"] == "198.51.100.1"
    response = _fetch(framework, request, proxied=True, **{"X-Forwarded-For": "2001:db8:ff::1"})
    assert response.json_ctx["ip"] == "2001:db8:ff::1"
    response = _fetch(framework, request, proxied=True)
    assert response.json_ctx["ip"] == ("127.0.0.1" if framework == "asgi" else "10.1.2.3")


def test_request_id_passed_through(framework: str, request: pytest.FixtureRequest) -> None:
    response = _fetch(framework, request, proxied=False, **{"X-Request-ID": "req-abc.1:2"})
    assert response.json_ctx["request_id"] == "req-abc.1:2"
    assert response.headers["X-Request-ID"] == "req-abc.1:2"
    assert response.json_ctx["correlation_id"] == "req-abc.1:2"


def test_insane_request_id_replaced(framework: str, request: pytest.FixtureRequest) -> None:
    response = _fetch(framework, request, proxied=False, **{"X-Request-ID": "x" * 129})
    ctx = response.json_ctx
    assert len(ctx["request_id"]) == 32 and response.headers["X-Request-ID"] == ctx["request_id"]


def test_correlation_id(framework: str, request: pytest.FixtureRequest) -> None:
    response = _fetch(
        framework,
        request,
        proxied=False,
        traceparent=TRACEPARENT,
        **{"X-Correlation-ID": "corr-1", "X-Request-ID": "req-1"},
    )
    assert response.json_ctx["correlation_id"] == TRACE_ID
    response = _fetch(
        framework,
        request,
        proxied=False,
        traceparent=TRACEPARENT.upper(),
        **{"X-Correlation-ID": "corr-1"},
    )
    assert response.json_ctx["correlation_id"] == "corr-1"


def test_session_id_is_hashed(framework: str, request: pytest.FixtureRequest) -> None:
    cookie = "sessionid" if framework == "django" else "session"
    response = _fetch(framework, request, proxied=False, cookies={cookie: SESSION_TOKEN})
    assert response.json_ctx["session_id"] == SESSION_ID
    assert SESSION_TOKEN not in response.text


def test_actor_resolver(framework: str, request: pytest.FixtureRequest) -> None:
    response = _fetch(framework, request, proxied=False, **{"X-Test-User": "Ann"})
    assert response.json_ctx["actor"] == ANN
    _after_request_is_empty(framework, request)


def test_resolver_failure_does_not_break_the_request(
    framework: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    response = _fetch(
        framework, request, proxied=False, **{"X-Test-Break": "1", "X-Request-ID": "req-b"}
    )
    assert response.status_code == 200
    assert response.json_ctx["actor"] is None
    assert response.json_ctx["request_id"] == "req-b"
    if framework != "asgi":  # the server's log is on another thread, but visible too
        assert "actor resolver failed" in caplog.text
    _after_request_is_empty(framework, request)


# Framework-specific -------------------------------------------------------------------------------


def test_asgi_lifespan_passes_through(asgi_get: Any) -> None:
    assert asgi_get("/started").json() is True


def test_asgi_context_covers_streaming_body(asgi_get: Any) -> None:
    response = asgi_get("/stream", **{"X-Request-ID": "streamed"})
    assert response.text == "streamed\n" * 3


def test_asgi_actor_set_in_sync_dependency_reaches_endpoint(asgi_get: Any) -> None:
    response = asgi_get("/login", **{"X-Login": "billing"})
    assert response.json()["actor"] == {"type": "service", "id": "billing"}


def test_asgi_replaces_app_request_id_header(asgi_get: Any) -> None:
    response = asgi_get("/own-header", **{"X-Request-ID": "req-9"})
    assert response.headers.get_list("X-Request-ID") == ["req-9"]


def test_asgi_other_scopes_pass_through() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["type"], current()))

    async def nothing() -> Any:
        return {}

    async def ignore(_message: Any) -> None:
        return None

    middleware = AsgiMiddleware(app, actor_resolver=_asgi_actor)
    for kind in ("websocket", "lifespan"):
        asyncio.run(middleware({"type": kind, "headers": []}, nothing, ignore))
    assert seen == [("websocket", None), ("lifespan", None)]


def test_asgi_with_asgi_transport_and_custom_header() -> None:
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        sent.append(current())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def sync_resolver(scope: Any) -> dict[str, str]:
        return {"type": "api_key", "id": "key-1"}

    middleware = AsgiMiddleware(
        app,
        trusted_proxies=["2001:db8:1::/48"],
        request_id_header="X-Trace-Ref",
        session_cookie="sid",
        actor_resolver=sync_resolver,
    )

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=middleware, client=("2001:db8:1::9", 4711))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(
                "/",
                headers={
                    "X-Trace-Ref": "ref-1",
                    "X-Forwarded-For": "203.0.113.5",
                    "Cookie": f"other=1; sid={SESSION_TOKEN}",
                },
            )

    response = asyncio.run(main())
    assert response.headers["X-Trace-Ref"] == "ref-1" and "X-Request-ID" not in response.headers
    (ctx,) = sent
    assert ctx.ip == "203.0.113.5" and ctx.request_id == "ref-1"
    assert ctx.session_id == SESSION_ID and ctx.actor == {"type": "api_key", "id": "key-1"}


def test_django_default_resolver_uses_request_user(django_get: Any) -> None:
    from django.test import override_settings

    with override_settings(TRAILSEAL_ACTOR_RESOLVER=None):
        assert django_get(**{"X-Test-User": "Ann"}).json_ctx["actor"] is None
    # Not set at all: request.user, as set by the authentication middleware.
    assert django_get(**{"X-Test-User": "Ann"}).json_ctx["actor"] == ANN
    assert django_get().json_ctx["actor"] is None  # anonymous


def test_django_resolver_by_dotted_path_and_settings(django_get: Any) -> None:
    from django.test import override_settings

    with override_settings(
        TRAILSEAL_ACTOR_RESOLVER=f"{__name__}.django_resolver",
        TRAILSEAL_SESSION_COOKIE="custom",
        TRAILSEAL_REQUEST_ID_HEADER="X-Trace-Ref",
    ):
        response = django_get(cookies={"custom": SESSION_TOKEN}, **{"X-Test-User": "Bob"})
        assert response.json_ctx["actor"] == {"type": "user", "id": "42", "name": "Bob"}
        assert response.json_ctx["session_id"] == SESSION_ID
        assert response.headers["X-Trace-Ref"] == response.json_ctx["request_id"]
    with override_settings(TRAILSEAL_SESSION_COOKIE=None):
        assert django_get(cookies={"sessionid": SESSION_TOKEN}).json_ctx["session_id"] is None


def test_django_bad_resolver_setting(django_get: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    with override_settings(TRAILSEAL_ACTOR_RESOLVER=42), pytest.raises(ImproperlyConfigured):
        django_get()


def test_flask_context_reset_after_failing_view(flask_get: Any) -> None:
    response = flask_get(path="/boom", **{"X-Request-ID": "req-boom"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "req-boom"
    assert current() is None
