"""The request context: parsing rules, client IP, and isolation between requests."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from trailseal.client import context
from trailseal.client.context import (
    RequestContext,
    TrustedProxies,
    build_request_context,
    client_ip,
    current,
    parse_traceparent,
    request_context,
    sane_id,
    session_fingerprint,
    set_actor,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


# traceparent ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        TRACEPARENT,
        f"00-{TRACE_ID}-00f067aa0ba902b7-00",
        f" {TRACEPARENT}\t",  # optional whitespace around a header value
        f"01-{TRACE_ID}-00f067aa0ba902b7-01",  # a later version, read like 00
        f"cc-{TRACE_ID}-00f067aa0ba902b7-01-what-the-future-adds",
    ],
)
def test_traceparent_valid(value: str) -> None:
    assert parse_traceparent(value) == TRACE_ID


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "00",
        f"ff-{TRACE_ID}-00f067aa0ba902b7-01",  # version ff is invalid
        f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01",  # hex must be lowercase
        f"00-{TRACE_ID}-00F067AA0BA902B7-01",
        f"0A-{TRACE_ID}-00f067aa0ba902b7-01",
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace-id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent-id
        f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01",  # short trace-id
        f"00-{TRACE_ID}a-00f067aa0ba902b7-01",  # long trace-id
        f"00-{TRACE_ID}-00f067aa0ba902b-01",
        f"00-{TRACE_ID}-00f067aa0ba902b7-1",
        f"00-{TRACE_ID}-00f067aa0ba902b7-0g",
        f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra",  # version 00 has nothing after flags
        f"01-{TRACE_ID}-00f067aa0ba902b7-01extra",  # a later field must start with "-"
        f"00_{TRACE_ID}_00f067aa0ba902b7_01",
        f"{TRACEPARENT},{TRACEPARENT}",  # two headers joined
        "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ],
)
def test_traceparent_invalid(value: str | None) -> None:
    assert parse_traceparent(value) is None


# client ip --------------------------------------------------------------------------------

PROXIES = ["10.0.0.0/8", "192.0.2.7", "2001:db8:1::/48", "::1"]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        # An untrusted peer is the client, whatever it claims.
        ("203.0.113.9", None, "203.0.113.9"),
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
        ("2001:db8:ffff::9", "198.51.100.1", "2001:db8:ffff::9"),
        # A trusted peer: the rightmost untrusted entry.
        ("10.1.2.3", "198.51.100.1", "198.51.100.1"),
        ("192.0.2.7", "198.51.100.1", "198.51.100.1"),
        ("10.1.2.3", "198.51.100.1, 10.9.9.9, 192.0.2.7", "198.51.100.1"),
        ("2001:db8:1::5", "2001:db8:abcd::1", "2001:db8:abcd::1"),
        ("::1", "198.51.100.1", "198.51.100.1"),
        ("2001:db8:1::5", "198.51.100.1, 2001:db8:1::77", "198.51.100.1"),
        # A client's spoofed leftmost value is never taken.
        ("10.1.2.3", "1.1.1.1, 198.51.100.1", "198.51.100.1"),
        ("10.1.2.3", "10.0.0.1, 198.51.100.1", "198.51.100.1"),
        ("10.1.2.3", "  1.1.1.1 ,198.51.100.1  ", "198.51.100.1"),
        # Trusted peer, no header: the peer.
        ("10.1.2.3", None, "10.1.2.3"),
        ("10.1.2.3", "", "10.1.2.3"),
        # Every hop trusted: the last trusted hop reached.
        ("10.1.2.3", "10.4.4.4, 192.0.2.7", "10.4.4.4"),
        # A malformed entry stops the walk at the last trusted hop.
        ("10.1.2.3", "198.51.100.1, unknown", "10.1.2.3"),
        ("10.1.2.3", "1.1.1.1, garbage, 10.5.5.5", "10.5.5.5"),
        ("10.1.2.3", "198.51.100.1:4711", "10.1.2.3"),
        ("10.1.2.3", "198.51.100.1,,", "10.1.2.3"),
        # Normalised: IPv4-mapped IPv6, zone ids, long IPv6 forms.
        ("::ffff:203.0.113.9", None, "203.0.113.9"),
        ("::ffff:10.1.2.3", "198.51.100.1", "198.51.100.1"),
        ("fe80::1%eth0", None, "fe80::1"),
        ("2001:0db8:ffff:0000::0009", None, "2001:db8:ffff::9"),
        # A peer that is not an address gives nothing (and the header is not believed).
        (None, "198.51.100.1", None),
        ("testclient", "198.51.100.1", None),
        ("", None, None),
    ],
)
def test_client_ip(peer: str | None, forwarded_for: str | None, expected: str | None) -> None:
    assert client_ip(peer, forwarded_for, PROXIES) == expected
    assert client_ip(peer, forwarded_for, TrustedProxies(PROXIES)) == expected


def test_client_ip_without_trusted_proxies_ignores_forwarded_for() -> None:
    assert client_ip("10.1.2.3", "198.51.100.1", ()) == "10.1.2.3"


def test_trusted_proxies_parsing() -> None:
    trusted = TrustedProxies(["10.0.0.0/8", " 2001:db8::/32 ", "127.0.0.1"])
    assert [str(n) for n in trusted.networks] == ["10.0.0.0/8", "2001:db8::/32", "127.0.0.1/32"]
    assert TrustedProxies("127.0.0.1").networks == TrustedProxies(["127.0.0.1"]).networks
    assert not TrustedProxies()
    assert "10.0.0.1" not in trusted  # addresses, not strings
    with pytest.raises(ValueError):
        TrustedProxies(["10.0.0.5/8"])  # host bits set: a likely typo
    with pytest.raises(ValueError):
        TrustedProxies(["not-an-address"])


# ids and session ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["abc", "A-b_c.d:e", "x" * 128, "0", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"]
)
def test_sane_id_kept(value: str) -> None:
    assert sane_id(value) == value


@pytest.mark.parametrize(
    "value",
    [None, "", "x" * 129, "a b", "a,b", "a\nb", "abc\n", "<script>", "é", "a/b", "a;b"],
)
def test_insane_id_refused(value: str | None) -> None:
    assert sane_id(value) is None


def test_session_fingerprint_is_a_hash_prefix() -> None:
    token = "s3cr3t-session-token"
    expected = hashlib.sha256(token.encode()).hexdigest()[:16]
    assert session_fingerprint(token) == expected
    assert len(expected) == 16 and token not in expected
    assert session_fingerprint("") is None
    assert session_fingerprint(None) is None
    assert session_fingerprint("\udcff") is not None  # undecodable bytes never raise


def _headers(**values: str) -> Callable[[str], str | None]:
    lowered = {k.replace("_", "-").lower(): v for k, v in values.items()}
    return lambda name: lowered.get(name.lower())


def test_build_request_context_generates_ids() -> None:
    ctx = build_request_context(
        _headers(), peer="203.0.113.9", session_token=None, trusted_proxies=TrustedProxies()
    )
    assert ctx.ip == "203.0.113.9"
    assert ctx.request_id is not None and len(ctx.request_id) == 32
    assert ctx.correlation_id == ctx.request_id
    assert ctx.user_agent is None and ctx.session_id is None and ctx.actor is None


def test_build_request_context_reads_headers() -> None:
    ctx = build_request_context(
        _headers(
            x_request_id="req-1",
            traceparent=TRACEPARENT,
            x_correlation_id="corr-1",
            user_agent="curl/8.5",
            x_forwarded_for="198.51.100.1",
        ),
        peer="10.0.0.1",
        session_token="tok",
        trusted_proxies=TrustedProxies(["10.0.0.0/8"]),
    )
    assert ctx == RequestContext(
        ip="198.51.100.1",
        user_agent="curl/8.5",
        session_id=session_fingerprint("tok"),
        request_id="req-1",
        correlation_id=TRACE_ID,
        actor=None,
    )


def test_build_request_context_falls_back() -> None:
    ctx = build_request_context(
        _headers(x_request_id="bad id!", traceparent="00-bad", x_correlation_id="corr-1"),
        peer="203.0.113.9",
        session_token=None,
        trusted_proxies=TrustedProxies(),
    )
    assert ctx.request_id != "bad id!" and sane_id(ctx.request_id) == ctx.request_id
    assert ctx.correlation_id == "corr-1"
    ctx = build_request_context(
        _headers(x_trace="1", my_id="given", x_correlation_id="no good"),
        peer="203.0.113.9",
        session_token=None,
        trusted_proxies=TrustedProxies(),
        request_id_header="My-Id",
    )
    assert ctx.request_id == "given" and ctx.correlation_id == "given"


def test_user_agent_is_cut_to_the_schema_limit() -> None:
    ctx = build_request_context(
        _headers(user_agent="x" * 5000),
        peer=None,
        session_token=None,
        trusted_proxies=TrustedProxies(),
    )
    assert ctx.user_agent == "x" * 2048


# the context variable ----------------------------------------------------------------------


def test_as_event_context_has_only_set_fields() -> None:
    ctx = RequestContext(
        ip="203.0.113.9",
        user_agent=None,
        session_id=None,
        request_id="r",
        correlation_id="c",
        actor={"type": "user", "id": "42"},
        region="eu-west-1",
    )
    assert ctx.as_event_context() == {
        "ip": "203.0.113.9",
        "request_id": "r",
        "correlation_id": "c",
        "region": "eu-west-1",
    }


def test_request_context_binds_and_resets() -> None:
    assert current() is None
    with request_context(request_id="job-1", service="billing") as ctx:
        assert current() is ctx
        assert ctx.as_event_context() == {"request_id": "job-1", "service": "billing"}
        with request_context(request_id="inner"):
            assert current() is not None and current().request_id == "inner"  # type: ignore[union-attr]
        assert current() is ctx
    assert current() is None


def test_request_context_resets_on_error() -> None:
    with pytest.raises(RuntimeError), request_context(request_id="job-1"):
        raise RuntimeError("boom")
    assert current() is None


def test_set_actor_replaces_the_context() -> None:
    with request_context(request_id="r1") as before:
        after = set_actor({"type": "user", "id": "42", "name": "Ann"})
        assert current() is after and after is not before
        assert after.actor == {"type": "user", "id": "42", "name": "Ann"}
        assert after.request_id == "r1" and before.actor is None
        # A later set_actor wins; the stored actor is a copy.
        actor = {"type": "service", "id": "billing"}
        set_actor(actor)
        actor["id"] = "changed"
        assert current().actor == {"type": "service", "id": "billing"}  # type: ignore[union-attr]
    assert current() is None


@pytest.mark.parametrize(
    "actor",
    [
        {"type": "robot", "id": "1"},
        {"type": "user"},
        {"type": "user", "id": ""},
        {"type": "user", "id": "1", "name": ""},
        {"type": "user", "id": "1", "role": "admin"},
    ],
)
def test_invalid_actor_refused(actor: dict[str, str]) -> None:
    with request_context(), pytest.raises(ValueError):
        set_actor(actor)
    with pytest.raises(ValueError):
        RequestContext(None, None, None, None, None, actor=actor)


def test_set_actor_needs_a_context() -> None:
    with pytest.raises(LookupError):
        set_actor({"type": "user", "id": "1"})


def test_actor_set_in_a_copied_context_is_seen_by_the_request() -> None:
    # As when a sync FastAPI dependency authenticates in a worker thread.
    with request_context(request_id="r1"):
        with ThreadPoolExecutor(1) as pool:
            copied = contextvars.copy_context()
            pool.submit(copied.run, set_actor, {"type": "user", "id": "7"}).result()
        assert current().actor == {"type": "user", "id": "7"}  # type: ignore[union-attr]


def test_resolver_failure_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_request: object) -> dict[str, str]:
        raise RuntimeError("database down")

    with request_context(request_id="r1"):
        context.run_actor_resolver(broken, object())
        context.run_actor_resolver(lambda _r: {"type": "nope", "id": "1"}, object())
        context.run_actor_resolver(lambda _r: None, object())
        context.run_actor_resolver(None, object())
        assert current().actor is None  # type: ignore[union-attr]
        context.run_actor_resolver(lambda r: {"type": "user", "id": str(r)}, 5)
        assert current().actor == {"type": "user", "id": "5"}  # type: ignore[union-attr]
    assert caplog.text.count("actor resolver failed") == 2


def test_isolation_between_asyncio_tasks() -> None:
    async def request(n: int) -> tuple[str | None, str]:
        with request_context(request_id=f"r{n}"):
            await asyncio.sleep(0.01 * (5 - n))
            set_actor({"type": "user", "id": str(n)})
            await asyncio.sleep(0.01 * n)
            ctx = current()
            assert ctx is not None and ctx.actor is not None
            return ctx.request_id, ctx.actor["id"]

    async def main() -> list[tuple[str | None, str]]:
        results = await asyncio.gather(*(request(n) for n in range(5)))
        assert current() is None
        return list(results)

    assert asyncio.run(main()) == [(f"r{n}", str(n)) for n in range(5)]


def test_isolation_between_threads() -> None:
    barrier = threading.Barrier(4)

    def request(n: int) -> tuple[str | None, str]:
        with request_context(request_id=f"r{n}"):
            barrier.wait()  # all four bound at once
            set_actor({"type": "user", "id": str(n)})
            barrier.wait()
            ctx = current()
            assert ctx is not None and ctx.actor is not None
            return ctx.request_id, ctx.actor["id"]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(request, range(4)))
        # The worker threads are reused; nothing is left bound in them.
        assert all(r is None for r in pool.map(lambda _n: current(), range(4)))
    assert results == [(f"r{n}", str(n)) for n in range(4)]
    assert current() is None
