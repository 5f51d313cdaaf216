"""The pytest plugin, as an application's test suite sees it: each test writes a small test
file, runs pytest on it in-process with ``pytester``, and checks the outcome and what pytest
printed. The plugin is not named anywhere: the ``pytest11`` entry point loads it."""

from __future__ import annotations

import textwrap

import pytest

from trailseal.client import core
from trailseal.client.pytest_plugin import AuditLog, assert_audited

pytest_plugins = ["pytester"]


def _run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_audited=textwrap.dedent(source))
    # Hypothesis's plugin adds most of a second to every run and plays no part here.
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def test_the_entry_point_loads_the_plugin(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("trailseal")


def test_passing_assertions_return_the_event(pytester):
    result = _run(pytester, """
        from trailseal.client.pytest_plugin import assert_audited

        def test_role_change(audit_log, audit_client):
            audit_client.record("user.created", actor=("user", "7"), target=("user", "42"),
                                after={"name": "Ann", "role": "viewer"})
            event_id = audit_client.record(
                "user.role.updated", actor=("user", "7"), target=("user", "42", "Ann"),
                before={"role": "viewer"}, after={"role": "admin"})

            event = audit_log.assert_audited(action="user.role.updated", target=("user", "42"))
            assert event["id"] == event_id
            audit_log.assert_audited(target={"type": "user", "id": 42, "name": "Ann"},
                                     actor=("user", "7"), outcome="success", count=1)
            audit_log.assert_audited(changes={"role": {"before": "viewer", "after": "admin"}})
            audit_log.assert_audited(changes={"role": {"after": "admin"}})
            audit_log.assert_audited(changes=["role"], count=2)
            audit_log.assert_audited(changes="name")
            audit_log.assert_audited(actor={"type": "user", "id": "7"}, count=2)
            assert assert_audited(action="user.created")["target"] == {"type": "user", "id": "42"}
            audit_log.assert_not_audited(action="user.deleted")
            audit_log.assert_not_audited(outcome="failure")
            audit_log.assert_not_audited(target=("user", "42", "Bob"))

        def test_failure_outcome_and_filter(audit_log, audit_client):
            audit_client.record("user.login.failed", actor=("user", "42"), target=("user", "42"),
                                outcome={"status": "failure", "error_code": "bad_password"})
            audit_client.record("user.login.succeeded", actor=("user", "42"),
                                target=("user", "42"))
            audit_log.assert_audited(outcome={"status": "failure", "error_code": "bad_password"})
            assert [e["action"] for e in audit_log.filter(target=("user", "42"))] == [
                "user.login.failed", "user.login.succeeded"]
            assert audit_log.filter(outcome="failure") == audit_log.events[:1]
            audit_log.clear()
            assert audit_log.events == []
            audit_log.assert_not_audited()
    """)
    result.assert_outcomes(passed=2)


def test_a_missing_event_fails_listing_what_was_recorded(pytester):
    result = _run(pytester, """
        def test_delete(audit_log, audit_client):
            audit_client.record("user.created", actor=("user", "7"), target=("user", "42"),
                                after={"role": "viewer"})
            audit_client.record("user.login.failed", actor=("user", "42"), target=("user", "42"),
                                outcome={"status": "failure", "error_code": "bad_password"})
            audit_log.assert_audited(action="user.deleted", target=("user", "42"))
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E * AssertionError: no audit event with action='user.deleted', target=('user', '42')",
        "E * recorded (2, * = matches):",
        "E *     user.created  actor=user:7  target=user:42  success  "
        "changes={role: None -> 'viewer'}",
        "E *     user.login.failed  actor=user:42  target=user:42  failure(bad_password)",
    ])
    # The failure points at the test's own line, not into the plugin.
    result.stdout.fnmatch_lines(["test_audited.py:6: AssertionError"])
    assert "pytest_plugin.py" not in result.stdout.str()


def test_nothing_recorded_says_so(pytester):
    result = _run(pytester, """
        from trailseal.client.pytest_plugin import assert_audited

        def test_nothing(audit_log):
            assert_audited(action="user.created")
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E * no audit event with action='user.created'",
        "E * no audit events were recorded",
    ])


def test_a_wrong_count_and_an_unwanted_event_mark_the_matches(pytester):
    result = _run(pytester, """
        def record(client, action, user):
            client.record(action, actor=("user", "7"), target=("user", user))

        def test_count(audit_log, audit_client):
            for user in ("1", "2", "3"):
                record(audit_client, "user.created", user)
            record(audit_client, "user.deleted", "2")
            audit_log.assert_audited(action="user.created", count=2)

        def test_not(audit_log, audit_client):
            record(audit_client, "user.created", "1")
            record(audit_client, "user.deleted", "2")
            audit_log.assert_not_audited(action="user.deleted")
    """)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "E * expected 2 audit event(s) with action='user.created', found 3",
        "E * recorded (4, * = matches):",
        "E *   * user.created  actor=user:7  target=user:1  success",
        "E *   * user.created  actor=user:7  target=user:2  success",
        "E *   * user.created  actor=user:7  target=user:3  success",
        "E *     user.deleted  actor=user:7  target=user:2  success",
    ])
    result.stdout.fnmatch_lines([
        "E * expected no audit event with action='user.deleted', found 1",
        "E *     user.created  actor=user:7  target=user:1  success",
        "E *   * user.deleted  actor=user:7  target=user:2  success",
    ])


def test_long_listings_and_values_are_cut_short(pytester):
    result = _run(pytester, """
        def test_many(audit_log, audit_client):
            for n in range(25):
                audit_client.record("item.updated", actor=("user", "7"), target=("item", n + 1),
                                    changes={"body": {"before": None, "after": "x" * 500}})
            audit_log.assert_audited(action="item.deleted")
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E *     item.updated  actor=user:7  target=item:20  success  "
        "changes={body: None -> 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...}",
        "E *     ... and 5 more",
    ])
    result.stdout.no_fnmatch_line("*target=item:21*")


def test_the_module_helper_needs_an_active_capture(pytester):
    result = _run(pytester, """
        from trailseal.client.pytest_plugin import assert_audited

        def test_without_fixture():
            assert_audited(action="user.created")
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E * RuntimeError: no audit capture is active: request the audit_log fixture*"
    ])


def test_events_recorded_on_other_threads_are_captured(pytester):
    result = _run(pytester, """
        import threading
        from concurrent.futures import ThreadPoolExecutor

        def test_threads(audit_log, audit_client):
            def record(n):
                audit_client.record("job.ran", actor=("system", "worker"), target=("job", n))

            threads = [threading.Thread(target=record, args=(n,)) for n in range(1, 9)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(record, range(9, 201)))
            audit_log.assert_audited(action="job.ran", count=200)
            assert sorted(int(e["target"]["id"]) for e in audit_log.events) == list(range(1, 201))
    """)
    result.assert_outcomes(passed=1)


def test_each_test_sees_only_its_own_events(pytester):
    result = _run(pytester, """
        from trailseal.client import AuditClient, core

        clients = []

        def test_first(audit_log, audit_client):
            clients.append(audit_client)
            audit_client.record("user.created", actor=("user", "7"), target=("user", "1"))
            assert len(audit_log.events) == 1

        def test_second(audit_log, audit_client):
            audit_log.assert_not_audited()
            audit_client.record("user.deleted", actor=("user", "7"), target=("user", "1"))
            assert [e["action"] for e in audit_log.events] == ["user.deleted"]
            assert audit_client is not clients[0]
            assert audit_client.spool != clients[0].spool

        def test_after_capture(tmp_path):
            # No capture is left behind, and the clients were closed.
            assert core.observers == []
            assert not any(client.sender.is_alive() for client in clients)
            client = AuditClient("http://127.0.0.1:9", "t", tmp_path)
            client.record("user.created", actor=("user", "7"), target=("user", "1"))
            client.close(timeout=0.1)
    """)
    result.assert_outcomes(passed=3)


def test_the_audit_client_is_strict_and_sends_nothing(pytester):
    result = _run(pytester, """
        import time

        import pytest
        from trailseal.client import InvalidEvent

        def test_strict(audit_client, tmp_path):
            with pytest.raises(InvalidEvent, match="action"):
                audit_client.record("Created User", actor=("user", "7"), target=("user", "1"))
            with pytest.raises(InvalidEvent, match="actor"):
                audit_client.record("user.created", target=("user", "1"))
            audit_client.record("user.created", actor=("user", "7"), target=("user", "1"))
            assert audit_client.spool.is_relative_to(tmp_path)
            assert audit_client.stats.spooled == 1
            started = time.monotonic()
            assert not audit_client.flush(timeout=30)
            audit_client.close()
            assert time.monotonic() - started < 5
            assert (audit_client.stats.sent, audit_client.stats.retries) == (0, 0)
    """)
    result.assert_outcomes(passed=1)


def test_criteria_of_the_wrong_shape_are_refused(pytester):
    result = _run(pytester, """
        import pytest

        def test_shapes(audit_log):
            with pytest.raises(TypeError, match="before"):
                audit_log.assert_audited(changes={"role": "admin"})
            with pytest.raises(TypeError, match="target must be"):
                audit_log.filter(target="user:42")
            with pytest.raises(ValueError, match="assert_not_audited"):
                audit_log.assert_audited(count=0)
    """)
    result.assert_outcomes(passed=1)


def test_capture_works_without_pytest_fixtures(tmp_path):
    log = AuditLog()
    client = core.AuditClient("http://127.0.0.1:9", "t", tmp_path, max_delay=3600)
    client.record("user.created", actor=("user", "7"), target=("user", "1"))
    with log.capture():
        client.record("user.deleted", actor=("user", "7"), target=("user", "1"))
        assert assert_audited(action="user.deleted") == log.events[0]
    client.record("user.created", actor=("user", "7"), target=("user", "2"))
    client.close(timeout=0.1)
    assert [e["action"] for e in log.events] == ["user.deleted"]
    assert core.observers == []
